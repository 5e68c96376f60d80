package mongodb_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/adapters/mongodb"
	"github.com/shiftflow/shiftflow/adapters/testenv"
	"github.com/shiftflow/shiftflow/core"
	"github.com/shiftflow/shiftflow/core/auth"
)

func usersRepo(t *testing.T) (*mongodb.UserRepo, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	r := mongodb.NewUserRepo(testenv.MongoDB(t))
	for i := 0; i < 2; i++ { // the second run must be a no-op
		if err := r.EnsureIndexes(ctx); err != nil {
			t.Fatalf("EnsureIndexes run %d: %v", i+1, err)
		}
	}
	return r, ctx
}

func testUser(id, email, org, role string) auth.User {
	return auth.User{ID: id, Email: email, OrganizationID: org, Role: role,
		PasswordHash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		CreatedAt:    time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func TestUserRepoEmailIsUniqueCaseInsensitively(t *testing.T) {
	r, ctx := usersRepo(t)
	if err := r.Create(ctx, testUser("u1", "Ann@Example.com", "org-a", auth.RoleAdmin)); err != nil {
		t.Fatal(err)
	}
	for _, email := range []string{"ann@example.com", "ANN@EXAMPLE.COM", "  ann@example.com "} {
		err := r.Create(ctx, testUser("u-"+email, email, "org-b", auth.RoleViewer))
		if core.ErrorCode(err) != core.EConflict {
			t.Fatalf("%q: err = %v, want conflict", email, err)
		}
	}
	got, err := r.ByEmail(ctx, auth.NormalizeEmail("ANN@example.COM"))
	if err != nil {
		t.Fatal(err)
	}
	want := testUser("u1", "Ann@Example.com", "org-a", auth.RoleAdmin)
	if got != want {
		t.Fatalf("ByEmail = %+v, want %+v (email kept as entered)", got, want)
	}
}

func TestUserRepoConcurrentCreatesOfOneEmailStoreOne(t *testing.T) {
	r, ctx := usersRepo(t)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = r.Create(ctx, testUser(testenv.Unique("u"), "race@example.com", "org-a", auth.RoleViewer))
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch core.ErrorCode(err) {
		case "":
			ok++
		case core.EConflict:
		default:
			t.Fatalf("unexpected error: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d creates succeeded, want 1", ok)
	}
}

func TestUserRepoHidesOtherOrganisations(t *testing.T) {
	r, ctx := usersRepo(t)
	for _, u := range []auth.User{
		testUser("a1", "b@a.example", "org-a", auth.RoleAdmin),
		testUser("a2", "a@a.example", "org-a", auth.RoleViewer),
		testUser("b1", "x@b.example", "org-b", auth.RoleAdmin),
	} {
		if err := r.Create(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.ByID(ctx, "org-a", "b1"); core.ErrorCode(err) != core.ENotFound {
		t.Fatalf("other organisation's user: %v, want not found", err)
	}
	if _, err := r.ByID(ctx, "", "b1"); core.ErrorCode(err) != core.ENotFound {
		t.Fatalf("empty organisation: %v, want not found", err)
	}
	if u, err := r.ByID(ctx, "org-b", "b1"); err != nil || u.Email != "x@b.example" {
		t.Fatalf("own user: %+v %v", u, err)
	}
	list, err := r.List(ctx, "org-a")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != "a2" || list[1].ID != "a1" {
		t.Fatalf("List(org-a) = %+v, want a2, a1 (by email)", list)
	}
	if _, err := r.ByEmail(ctx, "nobody@example.com"); core.ErrorCode(err) != core.ENotFound {
		t.Fatalf("unknown email: %v", err)
	}
}

func TestUserRepoSetPasswordHashIsCompareAndSet(t *testing.T) {
	r, ctx := usersRepo(t)
	u := testUser("u1", "ann@example.com", "org-a", auth.RoleViewer)
	if err := r.Create(ctx, u); err != nil {
		t.Fatal(err)
	}
	if err := r.SetPasswordHash(ctx, "u1", "not the current hash", "new"); core.ErrorCode(err) != core.ENotFound {
		t.Fatalf("stale old hash: %v, want not found", err)
	}
	if err := r.SetPasswordHash(ctx, "u1", u.PasswordHash, "new"); err != nil {
		t.Fatal(err)
	}
	got, _ := r.ByEmail(ctx, "ann@example.com")
	if got.PasswordHash != "new" {
		t.Fatalf("hash %q, want new", got.PasswordHash)
	}
}
