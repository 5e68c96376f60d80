package mongodb_test

import (
	"sync"
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/adapters/mongodb"
	"github.com/shiftflow/shiftflow/adapters/testenv"
	"github.com/shiftflow/shiftflow/core/invoice"
	"github.com/shiftflow/shiftflow/core/ulid"
)

func sentRecord(org, invoiceID string) invoice.SentRecord {
	key := invoice.MessageKey(invoiceID)
	return invoice.SentRecord{Key: key, OrganizationID: org, InvoiceID: invoiceID,
		MessageID: invoice.MessageID(key, "invoices@shiftflow.test"), To: "ap@client.test",
		State: invoice.SentCommitting, SentAt: time.Now().UTC().Truncate(time.Millisecond), Attempt: ulid.New()}
}

func TestEmailRepoOneInsertWinsAndSentAnswers(t *testing.T) {
	ctx := ctxT(t)
	r := mongodb.NewEmailRepo(testenv.MongoDB(t))
	ensure(t, ctx, r)
	inv := ulid.New()
	if sent, err := r.Sent(ctx, "org-a", inv); err != nil || sent {
		t.Fatalf("Sent before any record: %v %v", sent, err)
	}
	// Racing inserts of one email: exactly one wins.
	var wg sync.WaitGroup
	wins := make(chan invoice.SentRecord, 12)
	for i := 0; i < 12; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := sentRecord("org-a", inv)
			won, err := r.Insert(ctx, rec)
			if err != nil {
				t.Error(err)
			}
			if won {
				wins <- rec
			}
		}()
	}
	wg.Wait()
	close(wins)
	if len(wins) != 1 {
		t.Fatalf("%d inserts won, want 1", len(wins))
	}
	winner := <-wins
	if sent, err := r.Sent(ctx, "org-a", inv); err != nil || !sent {
		t.Fatalf("Sent after the record: %v %v", sent, err)
	}
	if sent, _ := r.Sent(ctx, "org-b", inv); sent {
		t.Fatal("another organisation sees the record")
	}
	if err := r.SetState(ctx, winner, invoice.SentDelivered); err != nil {
		t.Fatal(err)
	}
	got, ok, err := r.Find(ctx, "org-a", winner.Key)
	if err != nil || !ok || got.State != invoice.SentDelivered || got.MessageID != winner.MessageID || !got.SentAt.Equal(winner.SentAt) {
		t.Fatalf("Find: %+v %v %v", got, ok, err)
	}
	// Only the inserting attempt deletes.
	other := winner
	other.Attempt = ulid.New()
	if err := r.Delete(ctx, other); err != nil {
		t.Fatal(err)
	}
	if sent, _ := r.Sent(ctx, "org-a", inv); !sent {
		t.Fatal("another attempt deleted the record")
	}
	if err := r.Delete(ctx, winner); err != nil {
		t.Fatal(err)
	}
	if sent, _ := r.Sent(ctx, "org-a", inv); sent {
		t.Fatal("record still there after its inserter deleted it")
	}
}
