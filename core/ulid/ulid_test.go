package ulid

import (
	"testing"
	"time"
)

func TestULIDsSortByTimeAndAreValid(t *testing.T) {
	a := At(time.UnixMilli(1_000))
	b := At(time.UnixMilli(2_000))
	if !(a < b) {
		t.Fatalf("%s !< %s", a, b)
	}
	if !Valid(a) || !Valid(New()) {
		t.Fatalf("not valid: %s", a)
	}
	if At(time.UnixMilli(0))[:10] != "0000000000" {
		t.Fatalf("time prefix wrong: %s", At(time.UnixMilli(0)))
	}
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		id := New()
		if seen[id] {
			t.Fatal("duplicate")
		}
		seen[id] = true
	}
	for _, bad := range []string{"", "x", "8ZZZZZZZZZZZZZZZZZZZZZZZZZ", "01ARZ3NDEKTSV4RRFFQ69G5FAI", "../../../../../../etc/pass"} {
		if Valid(bad) {
			t.Errorf("Valid(%q)", bad)
		}
	}
}

func TestDerivedIsStableValidAndSortsByTime(t *testing.T) {
	at := time.UnixMilli(1_764_000_000_000)
	a, b := Derived(at, "invoice.generated/01J"), Derived(at, "invoice.generated/01J")
	if a != b || !Valid(a) {
		t.Fatalf("Derived not stable or not valid: %s %s", a, b)
	}
	if Derived(at, "invoice.generated/01K") == a {
		t.Fatal("different keys, same id")
	}
	if At(at)[:10] != a[:10] || !(Derived(at.Add(time.Millisecond), "x") > a) {
		t.Fatalf("time part wrong: %s vs %s", a, At(at))
	}
}
