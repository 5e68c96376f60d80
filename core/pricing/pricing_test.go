package pricing_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/core"
	"github.com/shiftflow/shiftflow/core/pricing"
)

// issueTable is the example table from the issue, verbatim.
const issueTable = `{"currency":"EUR","taxRateBasisPoints":2000,"roles":{"nurse":{"hourlyRate":3000}},"overtime":{"afterMinutes":480,"multiplierPercent":150},"weekend":{"multiplierPercent":125},"night":{"from":"22:00","to":"06:00","multiplierPercent":120},"minimumBillableMinutes":0}`

func baseTable(t *testing.T) pricing.Table {
	t.Helper()
	var tb pricing.Table
	if err := json.Unmarshal([]byte(issueTable), &tb); err != nil {
		t.Fatal(err)
	}
	if err := tb.Validate(); err != nil {
		t.Fatal(err)
	}
	return tb
}

func ptr[T any](v T) *T { return &v }

func at(t *testing.T, loc *time.Location, s string) time.Time {
	t.Helper()
	v, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func line(desc string, minutes int, rate int64, pct int, amount int64) pricing.Line {
	return pricing.Line{Description: desc, Minutes: minutes, HourlyRate: rate, MultiplierPercent: pct, Amount: amount}
}

func TestPriceFollowsTheIssueRules(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	newYork, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	noWeekend := &pricing.Override{Weekend: &pricing.Weekend{}}
	// 2026-11-25 is a Wednesday, 2026-11-28 a Saturday.
	cases := []struct {
		name       string
		override   *pricing.Override
		loc        *time.Location
		start, end string
		breakMin   int
		split      pricing.Split
		lines      []pricing.Line
		subtotal   int64
		tax        int64
	}{
		{
			name: "regular weekday with break", start: "2026-11-25 09:00", end: "2026-11-25 17:00", breakMin: 30,
			split: pricing.Split{WorkedMinutes: 450, BreakMinutes: 30, RegularMinutes: 450},
			lines: []pricing.Line{line("nurse regular", 450, 3000, 100, 22500)}, subtotal: 22500, tax: 4500,
		},
		{
			name: "overtime after 480 worked minutes", start: "2026-11-25 08:00", end: "2026-11-25 18:00", breakMin: 30,
			split:    pricing.Split{WorkedMinutes: 570, BreakMinutes: 30, RegularMinutes: 480, OvertimeMinutes: 90},
			lines:    []pricing.Line{line("nurse regular", 480, 3000, 100, 24000), line("nurse overtime", 90, 3000, 150, 6750)},
			subtotal: 30750, tax: 6150,
		},
		{
			name: "weekend day", start: "2026-11-28 09:00", end: "2026-11-28 17:00",
			split: pricing.Split{WorkedMinutes: 480, RegularMinutes: 480},
			lines: []pricing.Line{line("nurse weekend", 480, 3000, 125, 30000)}, subtotal: 30000, tax: 6000,
		},
		{
			name: "night shift on a weekday", start: "2026-11-25 22:00", end: "2026-11-26 06:00",
			split: pricing.Split{WorkedMinutes: 480, RegularMinutes: 480},
			lines: []pricing.Line{line("nurse night", 480, 3000, 120, 28800)}, subtotal: 28800, tax: 5760,
		},
		{
			// Break in the middle: 21:30-22:30 is not worked.
			name: "crossing midnight with a mid-shift break", start: "2026-11-25 18:00", end: "2026-11-26 02:00", breakMin: 60,
			split:    pricing.Split{WorkedMinutes: 420, BreakMinutes: 60, RegularMinutes: 420},
			lines:    []pricing.Line{line("nurse regular", 210, 3000, 100, 10500), line("nurse night", 210, 3000, 120, 12600)},
			subtotal: 23100, tax: 4620,
		},
		{
			// Fri 20-22 regular, 22-24 night, Sat 00-04 weekend beats night,
			// Sat 04-08 overtime beats weekend.
			name: "Friday night into Saturday: weekend boundary and overtime", start: "2026-11-27 20:00", end: "2026-11-28 08:00",
			split: pricing.Split{WorkedMinutes: 720, RegularMinutes: 480, OvertimeMinutes: 240},
			lines: []pricing.Line{
				line("nurse regular", 120, 3000, 100, 6000), line("nurse night", 120, 3000, 120, 7200),
				line("nurse weekend", 240, 3000, 125, 15000), line("nurse overtime", 240, 3000, 150, 18000),
			},
			subtotal: 46200, tax: 9240,
		},
		{
			name: "Sunday into Monday: weekend ends at local midnight", start: "2026-11-29 20:00", end: "2026-11-30 04:00",
			split:    pricing.Split{WorkedMinutes: 480, RegularMinutes: 480},
			lines:    []pricing.Line{line("nurse weekend", 240, 3000, 125, 15000), line("nurse night", 240, 3000, 120, 14400)},
			subtotal: 29400, tax: 5880,
		},
		{
			// 25 Oct 2026 03:00 CEST -> 02:00 CET: local 00:00-08:00 lasts 9 hours,
			// 7 of them before 06:00 local.
			name: "DST ends in Berlin: the repeated hour is worked and is night", loc: berlin, override: noWeekend,
			start: "2026-10-25 00:00", end: "2026-10-25 08:00",
			split: pricing.Split{WorkedMinutes: 540, RegularMinutes: 480, OvertimeMinutes: 60},
			lines: []pricing.Line{
				line("nurse night", 420, 3000, 120, 25200), line("nurse regular", 60, 3000, 100, 3000),
				line("nurse overtime", 60, 3000, 150, 4500),
			},
			subtotal: 32700, tax: 6540,
		},
		{
			// 29 Mar 2026 02:00 CET -> 03:00 CEST: local 00:00-08:00 lasts 7 hours.
			name: "DST starts in Berlin: the skipped hour is not worked", loc: berlin, override: noWeekend,
			start: "2026-03-29 00:00", end: "2026-03-29 08:00",
			split:    pricing.Split{WorkedMinutes: 420, RegularMinutes: 420},
			lines:    []pricing.Line{line("nurse night", 300, 3000, 120, 18000), line("nurse regular", 120, 3000, 100, 6000)},
			subtotal: 24000, tax: 4800,
		},
		{
			// Friday evening in New York is already Saturday in UTC.
			name: "weekend and night by the organisation's clock, not UTC", loc: newYork,
			start: "2026-11-27 20:00", end: "2026-11-27 23:00",
			split:    pricing.Split{WorkedMinutes: 180, RegularMinutes: 180},
			lines:    []pricing.Line{line("nurse regular", 120, 3000, 100, 6000), line("nurse night", 60, 3000, 120, 3600)},
			subtotal: 9600, tax: 1920,
		},
		{
			name:     "highest multiplier wins, no stacking: night 200 over overtime 150",
			override: &pricing.Override{Night: &pricing.Night{From: "22:00", To: "06:00", MultiplierPercent: 200}},
			start:    "2026-11-25 14:00", end: "2026-11-26 00:00",
			split:    pricing.Split{WorkedMinutes: 600, RegularMinutes: 480, OvertimeMinutes: 120},
			lines:    []pricing.Line{line("nurse regular", 480, 3000, 100, 24000), line("nurse night", 120, 3000, 200, 12000)},
			subtotal: 36000, tax: 7200,
		},
		{
			// 1 x 30 x 100 / 6000 = 0.5 -> 1; tax 1 x 5000 / 10000 = 0.5 -> 1.
			name:     "rounding: exact half rounds up on line and tax",
			override: &pricing.Override{Roles: map[string]pricing.Role{"nurse": {HourlyRate: 30}}, TaxRateBasisPoints: ptr[int64](5000)},
			start:    "2026-11-25 09:00", end: "2026-11-25 09:01",
			split: pricing.Split{WorkedMinutes: 1, RegularMinutes: 1},
			lines: []pricing.Line{line("nurse regular", 1, 30, 100, 1)}, subtotal: 1, tax: 1,
		},
		{
			// 7 x 3333 / 60 = 388.85 -> 389; tax 77.8 -> 78.
			name:     "rounding: above half rounds up",
			override: &pricing.Override{Roles: map[string]pricing.Role{"nurse": {HourlyRate: 3333}}},
			start:    "2026-11-25 09:00", end: "2026-11-25 09:07",
			split: pricing.Split{WorkedMinutes: 7, RegularMinutes: 7},
			lines: []pricing.Line{line("nurse regular", 7, 3333, 100, 389)}, subtotal: 389, tax: 78,
		},
		{
			// 1 x 29 / 60 = 0.483 -> 0.
			name:     "rounding: below half rounds down",
			override: &pricing.Override{Roles: map[string]pricing.Role{"nurse": {HourlyRate: 29}}},
			start:    "2026-11-25 09:00", end: "2026-11-25 09:01",
			split: pricing.Split{WorkedMinutes: 1, RegularMinutes: 1},
			lines: []pricing.Line{line("nurse regular", 1, 29, 100, 0)}, subtotal: 0, tax: 0,
		},
		{
			name: "client override: own rate, own weekend multiplier, no tax",
			override: &pricing.Override{
				Roles:              map[string]pricing.Role{"nurse": {HourlyRate: 4000}},
				Weekend:            &pricing.Weekend{MultiplierPercent: 200},
				TaxRateBasisPoints: ptr[int64](0),
			},
			start: "2026-11-28 09:00", end: "2026-11-28 17:00", breakMin: 30,
			split: pricing.Split{WorkedMinutes: 450, BreakMinutes: 30, RegularMinutes: 450},
			lines: []pricing.Line{line("nurse weekend", 450, 4000, 200, 60000)}, subtotal: 60000, tax: 0,
		},
		{
			name:     "minimum billable minutes top up a short shift at the base rate",
			override: &pricing.Override{MinimumBillableMinutes: ptr(240)},
			start:    "2026-11-25 09:00", end: "2026-11-25 10:00",
			split:    pricing.Split{WorkedMinutes: 60, RegularMinutes: 60},
			lines:    []pricing.Line{line("nurse regular", 60, 3000, 100, 3000), line("nurse minimum billable", 180, 3000, 100, 9000)},
			subtotal: 12000, tax: 2400,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tb := baseTable(t).Apply(tc.override)
			if err := tb.Validate(); err != nil {
				t.Fatal(err)
			}
			loc := tc.loc
			if loc == nil {
				loc = time.UTC
			}
			start, end := at(t, loc, tc.start), at(t, loc, tc.end)
			split, err := tb.SplitMinutes(start, end, tc.breakMin)
			if err != nil {
				t.Fatal(err)
			}
			if split != tc.split {
				t.Errorf("split = %+v, want %+v", split, tc.split)
			}
			q, err := tb.Price(pricing.Input{Role: "nurse", Start: start, End: end, BreakMinutes: tc.breakMin, RegularMinutes: -1, Location: loc})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(q.Lines, tc.lines) {
				t.Errorf("lines:\n got %+v\nwant %+v", q.Lines, tc.lines)
			}
			if q.Subtotal != tc.subtotal || q.Tax != tc.tax || q.Total != tc.subtotal+tc.tax {
				t.Errorf("subtotal/tax/total = %d/%d/%d, want %d/%d/%d", q.Subtotal, q.Tax, q.Total, tc.subtotal, tc.tax, tc.subtotal+tc.tax)
			}
			if q.Currency != "EUR" {
				t.Errorf("currency %q", q.Currency)
			}
		})
	}
}

func TestPriceUsesTheTimesheetRegularMinutes(t *testing.T) {
	// A timesheet written under afterMinutes=60 keeps its split even if the
	// table changed before the invoice was computed.
	tb := baseTable(t)
	start := at(t, time.UTC, "2026-11-25 09:00")
	q, err := tb.Price(pricing.Input{Role: "nurse", Start: start, End: start.Add(2 * time.Hour), RegularMinutes: 60})
	if err != nil {
		t.Fatal(err)
	}
	want := []pricing.Line{line("nurse regular", 60, 3000, 100, 3000), line("nurse overtime", 60, 3000, 150, 4500)}
	if !reflect.DeepEqual(q.Lines, want) {
		t.Fatalf("got %+v", q.Lines)
	}
}

func TestSplitAndPriceRejectBadShifts(t *testing.T) {
	tb := baseTable(t)
	start := at(t, time.UTC, "2026-11-25 09:00")
	cases := []struct {
		name     string
		end      time.Time
		breakMin int
		role     string
	}{
		{"end before start", start.Add(-time.Hour), 0, "nurse"},
		{"end equals start", start, 0, "nurse"},
		{"longer than 24 hours", start.Add(24*time.Hour + time.Minute), 0, "nurse"},
		{"break as long as the shift", start.Add(time.Hour), 60, "nurse"},
		{"negative break", start.Add(time.Hour), -1, "nurse"},
		{"not whole minutes", start.Add(time.Hour + time.Second), 0, "nurse"},
		{"unknown role", start.Add(time.Hour), 0, "pilot"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tb.Price(pricing.Input{Role: tc.role, Start: start, End: tc.end, BreakMinutes: tc.breakMin, RegularMinutes: -1})
			if core.ErrorCode(err) != core.EInvalid {
				t.Fatalf("err = %v, want invalid", err)
			}
		})
	}
	if _, err := tb.SplitMinutes(start, start.Add(24*time.Hour), 0); err != nil {
		t.Fatalf("exactly 24 hours must be allowed: %v", err)
	}
}

func TestTableValidateNamesTheField(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*pricing.Table)
	}{
		{"lowercase currency", func(tb *pricing.Table) { tb.Currency = "eur" }},
		{"tax above 100%", func(tb *pricing.Table) { tb.TaxRateBasisPoints = 10001 }},
		{"negative tax", func(tb *pricing.Table) { tb.TaxRateBasisPoints = -1 }},
		{"no roles", func(tb *pricing.Table) { tb.Roles = nil }},
		{"zero rate", func(tb *pricing.Table) { tb.Roles["nurse"] = pricing.Role{} }},
		{"rate too high", func(tb *pricing.Table) { tb.Roles["nurse"] = pricing.Role{HourlyRate: pricing.MaxHourlyRate + 1} }},
		{"bad role name", func(tb *pricing.Table) { tb.Roles["$gt"] = pricing.Role{HourlyRate: 1} }},
		{"multiplier below 100", func(tb *pricing.Table) { tb.Overtime.MultiplierPercent = 50 }},
		{"multiplier too high", func(tb *pricing.Table) { tb.Weekend.MultiplierPercent = 1001 }},
		{"overtime after more than a day", func(tb *pricing.Table) { tb.Overtime.AfterMinutes = 1441 }},
		{"night clock", func(tb *pricing.Table) { tb.Night.From = "24:00" }},
		{"night empty window", func(tb *pricing.Table) { tb.Night.To = tb.Night.From }},
		{"negative minimum", func(tb *pricing.Table) { tb.MinimumBillableMinutes = -5 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tb := baseTable(t)
			tc.mutate(&tb)
			if err := tb.Validate(); core.ErrorCode(err) != core.EInvalid {
				t.Fatalf("err = %v, want invalid", err)
			}
		})
	}
}

func TestApplyDoesNotChangeTheOrganisationTable(t *testing.T) {
	tb := baseTable(t)
	eff := tb.Apply(&pricing.Override{Roles: map[string]pricing.Role{"nurse": {HourlyRate: 1}, "carer": {HourlyRate: 2}}})
	if tb.Roles["nurse"].HourlyRate != 3000 || tb.HasRole("carer") {
		t.Fatalf("organisation table changed: %+v", tb.Roles)
	}
	if eff.Roles["nurse"].HourlyRate != 1 || !eff.HasRole("carer") || eff.Weekend.MultiplierPercent != 125 {
		t.Fatalf("effective table wrong: %+v", eff)
	}
}

// BenchmarkPriceDayLongShift prices the longest shift (24 h, every rule on).
func BenchmarkPriceDayLongShift(b *testing.B) {
	var tb pricing.Table
	if err := json.Unmarshal([]byte(issueTable), &tb); err != nil {
		b.Fatal(err)
	}
	start := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	in := pricing.Input{Role: "nurse", Start: start, End: start.Add(24 * time.Hour), BreakMinutes: 60, RegularMinutes: -1, Location: time.UTC}
	for b.Loop() {
		if _, err := tb.Price(in); err != nil {
			b.Fatal(err)
		}
	}
}
