// Package pricing holds an organisation's pricing table, the per-client
// overrides and the computation of invoice lines from worked time.
//
// Every amount is an integer number of minor units (cents) of the table's
// currency (docs/design.md#6); every multiplier is a whole percent.
// docs/pricing.md explains each choice the issue left open.
package pricing

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/bojanz/currency"

	"github.com/shiftflow/shiftflow/core"
)

// Limits keep every product of minutes, rate and percent far inside int64.
const (
	MaxHourlyRate        = 100_000_000 // 1,000,000.00 per hour
	MaxMultiplierPercent = 1000
	MaxShiftMinutes      = 24 * 60
	MaxRoles             = 200
)

// Table is an organisation's pricing table. The JSON names are the API's.
type Table struct {
	Currency               string          `json:"currency" bson:"currency" required:"true"`
	TaxRateBasisPoints     int64           `json:"taxRateBasisPoints" bson:"taxRateBasisPoints" required:"true"`
	Roles                  map[string]Role `json:"roles" bson:"roles" required:"true"`
	Overtime               Overtime        `json:"overtime" bson:"overtime" required:"true"`
	Weekend                Weekend         `json:"weekend" bson:"weekend"`
	Night                  Night           `json:"night" bson:"night"`
	MinimumBillableMinutes int             `json:"minimumBillableMinutes" bson:"minimumBillableMinutes"`
}

// Role is the price of one role.
type Role struct {
	HourlyRate int64 `json:"hourlyRate" bson:"hourlyRate" required:"true"`
}

// Overtime: worked minutes after AfterMinutes are overtime.
// MultiplierPercent 0 switches overtime off.
type Overtime struct {
	AfterMinutes      int `json:"afterMinutes" bson:"afterMinutes" required:"true"`
	MultiplierPercent int `json:"multiplierPercent" bson:"multiplierPercent" required:"true"`
}

// Weekend applies to minutes on a Saturday or Sunday, local time.
// MultiplierPercent 0 switches it off.
type Weekend struct {
	MultiplierPercent int `json:"multiplierPercent" bson:"multiplierPercent"`
}

// Night applies to minutes whose local clock time is in [From, To); the
// window wraps midnight when From > To. MultiplierPercent 0 switches it off.
type Night struct {
	From              string `json:"from" bson:"from"`
	To                string `json:"to" bson:"to"`
	MultiplierPercent int    `json:"multiplierPercent" bson:"multiplierPercent"`
}

// Override is a client's partial pricing table: every field present
// replaces the organisation's; roles are merged role by role.
type Override struct {
	Currency               *string         `json:"currency,omitempty" bson:"currency,omitempty"`
	TaxRateBasisPoints     *int64          `json:"taxRateBasisPoints,omitempty" bson:"taxRateBasisPoints,omitempty"`
	Roles                  map[string]Role `json:"roles,omitempty" bson:"roles,omitempty"`
	Overtime               *Overtime       `json:"overtime,omitempty" bson:"overtime,omitempty"`
	Weekend                *Weekend        `json:"weekend,omitempty" bson:"weekend,omitempty"`
	Night                  *Night          `json:"night,omitempty" bson:"night,omitempty"`
	MinimumBillableMinutes *int            `json:"minimumBillableMinutes,omitempty" bson:"minimumBillableMinutes,omitempty"`
}

var (
	// No '.' or '$': role names are keys of a MongoDB document.
	roleRe  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9 _-]{0,63}$`)
	clockRe = regexp.MustCompile(`^([01][0-9]|2[0-3]):[0-5][0-9]$`)
)

// ValidCurrency reports whether c is an active ISO 4217 currency code
// (upper case), from the CLDR data that github.com/bojanz/currency keeps
// current: "ABC" is no currency, and neither are withdrawn codes (DEM,
// HRK), funds, metals or the test code XTS.
func ValidCurrency(c string) bool {
	return c != "" && c == strings.ToUpper(c) && currency.IsValid(c)
}

// ValidRoleName reports whether name can be a role.
func ValidRoleName(name string) bool { return roleRe.MatchString(name) }

// Validate returns core.EInvalid naming the first bad field.
func (t Table) Validate() error {
	if !ValidCurrency(t.Currency) {
		return core.Invalid("currency must be an ISO 4217 code such as EUR, not %q", t.Currency)
	}
	if t.TaxRateBasisPoints < 0 || t.TaxRateBasisPoints > 10000 {
		return core.Invalid("taxRateBasisPoints must be between 0 and 10000")
	}
	if len(t.Roles) == 0 {
		return core.Invalid("roles must name at least one role")
	}
	if err := validateRoles(t.Roles); err != nil {
		return err
	}
	if err := t.Overtime.validate(); err != nil {
		return err
	}
	if err := t.Weekend.validate(); err != nil {
		return err
	}
	if err := t.Night.validate(); err != nil {
		return err
	}
	if t.MinimumBillableMinutes < 0 || t.MinimumBillableMinutes > MaxShiftMinutes {
		return core.Invalid("minimumBillableMinutes must be between 0 and %d", MaxShiftMinutes)
	}
	return nil
}

// Validate checks the fields that are present.
func (o Override) Validate() error {
	if o.Currency != nil && !ValidCurrency(*o.Currency) {
		return core.Invalid("currency must be an ISO 4217 code such as EUR, not %q", *o.Currency)
	}
	if o.TaxRateBasisPoints != nil && (*o.TaxRateBasisPoints < 0 || *o.TaxRateBasisPoints > 10000) {
		return core.Invalid("taxRateBasisPoints must be between 0 and 10000")
	}
	if err := validateRoles(o.Roles); err != nil {
		return err
	}
	if o.Overtime != nil {
		if err := o.Overtime.validate(); err != nil {
			return err
		}
	}
	if o.Weekend != nil {
		if err := o.Weekend.validate(); err != nil {
			return err
		}
	}
	if o.Night != nil {
		if err := o.Night.validate(); err != nil {
			return err
		}
	}
	if o.MinimumBillableMinutes != nil && (*o.MinimumBillableMinutes < 0 || *o.MinimumBillableMinutes > MaxShiftMinutes) {
		return core.Invalid("minimumBillableMinutes must be between 0 and %d", MaxShiftMinutes)
	}
	return nil
}

func validateRoles(roles map[string]Role) error {
	if len(roles) > MaxRoles {
		return core.Invalid("at most %d roles", MaxRoles)
	}
	for name, r := range roles {
		if !ValidRoleName(name) {
			return core.Invalid("role name %q must be 1-64 letters, digits, spaces, '_' or '-'", name)
		}
		if r.HourlyRate <= 0 || r.HourlyRate > MaxHourlyRate {
			return core.Invalid("roles.%s.hourlyRate must be between 1 and %d minor units", name, MaxHourlyRate)
		}
	}
	return nil
}

func validMultiplier(field string, p int) error {
	if p != 0 && (p < 100 || p > MaxMultiplierPercent) {
		return core.Invalid("%s.multiplierPercent must be 0 (off) or between 100 and %d", field, MaxMultiplierPercent)
	}
	return nil
}

func (o Overtime) validate() error {
	if o.AfterMinutes < 0 || o.AfterMinutes > MaxShiftMinutes {
		return core.Invalid("overtime.afterMinutes must be between 0 and %d", MaxShiftMinutes)
	}
	return validMultiplier("overtime", o.MultiplierPercent)
}

func (w Weekend) validate() error { return validMultiplier("weekend", w.MultiplierPercent) }

func (n Night) validate() error {
	if err := validMultiplier("night", n.MultiplierPercent); err != nil {
		return err
	}
	if n.MultiplierPercent == 0 && n.From == "" && n.To == "" {
		return nil
	}
	if !clockRe.MatchString(n.From) || !clockRe.MatchString(n.To) {
		return core.Invalid("night.from and night.to must be clock times HH:MM, such as 22:00")
	}
	if n.From == n.To {
		return core.Invalid("night.from and night.to must differ")
	}
	return nil
}

// Apply returns t with the override's fields in place. A nil override
// returns t unchanged. The result shares no map with t.
func (t Table) Apply(o *Override) Table {
	out := t
	out.Roles = make(map[string]Role, len(t.Roles))
	for k, v := range t.Roles {
		out.Roles[k] = v
	}
	if o == nil {
		return out
	}
	if o.Currency != nil {
		out.Currency = *o.Currency
	}
	if o.TaxRateBasisPoints != nil {
		out.TaxRateBasisPoints = *o.TaxRateBasisPoints
	}
	for k, v := range o.Roles {
		out.Roles[k] = v
	}
	if o.Overtime != nil {
		out.Overtime = *o.Overtime
	}
	if o.Weekend != nil {
		out.Weekend = *o.Weekend
	}
	if o.Night != nil {
		out.Night = *o.Night
	}
	if o.MinimumBillableMinutes != nil {
		out.MinimumBillableMinutes = *o.MinimumBillableMinutes
	}
	return out
}

// HasRole reports whether the table prices role.
func (t Table) HasRole(role string) bool {
	_, ok := t.Roles[role]
	return ok
}

// RoleNames returns the priced roles, sorted.
func (t Table) RoleNames() []string {
	out := make([]string, 0, len(t.Roles))
	for k := range t.Roles {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Split is how a shift's minutes divide.
type Split struct {
	WorkedMinutes   int
	BreakMinutes    int
	RegularMinutes  int
	OvertimeMinutes int
}

// Minutes returns the whole minutes between start and end, or an error
// when they are not whole minutes apart.
func Minutes(start, end time.Time) (int, error) {
	d := end.Sub(start)
	if d%time.Minute != 0 {
		return 0, core.Invalid("start and end must be whole minutes apart")
	}
	return int(d / time.Minute), nil
}

// SplitMinutes divides a shift: worked = end - start - break; the first
// overtime.afterMinutes worked minutes are regular, the rest overtime
// (all regular when overtime is off).
func (t Table) SplitMinutes(start, end time.Time, breakMinutes int) (Split, error) {
	total, err := Minutes(start, end)
	if err != nil {
		return Split{}, err
	}
	if total <= 0 || total > MaxShiftMinutes {
		return Split{}, core.Invalid("a shift lasts between 1 minute and 24 hours")
	}
	if breakMinutes < 0 || breakMinutes >= total {
		return Split{}, core.Invalid("breakMinutes must be at least 0 and shorter than the shift")
	}
	worked := total - breakMinutes
	s := Split{WorkedMinutes: worked, BreakMinutes: breakMinutes, RegularMinutes: worked}
	if t.Overtime.MultiplierPercent > 0 && worked > t.Overtime.AfterMinutes {
		s.RegularMinutes = t.Overtime.AfterMinutes
		s.OvertimeMinutes = worked - t.Overtime.AfterMinutes
	}
	return s, nil
}

// Line is one invoice line.
type Line struct {
	Description       string `json:"description" bson:"description"`
	Minutes           int    `json:"minutes" bson:"minutes"`
	HourlyRate        int64  `json:"hourlyRate" bson:"hourlyRate"`
	MultiplierPercent int    `json:"multiplierPercent" bson:"multiplierPercent"`
	Amount            int64  `json:"amount" bson:"amount"`
}

// Quote is the priced result of one shift.
type Quote struct {
	Currency string
	Lines    []Line
	Subtotal int64
	Tax      int64
	Total    int64
}

// Input is what Price needs about a shift.
type Input struct {
	Role         string
	Start, End   time.Time
	BreakMinutes int
	// RegularMinutes is how many worked minutes are regular before
	// overtime starts; the timesheet's figure keeps invoice and timesheet
	// consistent. Negative: take it from the table.
	RegularMinutes int
	// Location is the organisation's time zone for weekend and night.
	Location *time.Location
}

// Kinds of line, in the order that breaks ties between equal multipliers.
const (
	kindOvertime = iota
	kindWeekend
	kindNight
	kindRegular
	kindMinimum
)

var kindName = [...]string{"overtime", "weekend", "night", "regular", "minimum billable"}

// Price computes the invoice lines of a shift.
//
// The break is placed in the middle of the shift (see docs/pricing.md):
// the minutes [start+(total-break)/2, +break) are not worked. Each worked
// minute is then, in order, regular or overtime (after RegularMinutes) and
// weekend or night by its local clock time; the highest multiplier that
// applies wins, they never stack. Minutes of the same kind form one line.
func (t Table) Price(in Input) (Quote, error) {
	rate, ok := t.Roles[in.Role]
	if !ok {
		return Quote{}, core.Invalid("role %q is not in the pricing table", in.Role)
	}
	split, err := t.SplitMinutes(in.Start, in.End, in.BreakMinutes)
	if err != nil {
		return Quote{}, err
	}
	regular := split.RegularMinutes
	if in.RegularMinutes >= 0 {
		regular = in.RegularMinutes
	}
	loc := in.Location
	if loc == nil {
		loc = time.UTC
	}
	nightFrom, nightTo := -1, -1
	if t.Night.MultiplierPercent > 0 {
		nightFrom, nightTo = clockMinutes(t.Night.From), clockMinutes(t.Night.To)
	}
	total := split.WorkedMinutes + split.BreakMinutes
	breakStart := (total - split.BreakMinutes) / 2
	breakEnd := breakStart + split.BreakMinutes

	minutes := map[int]int{}
	percent := map[int]int{}
	var order []int
	worked := 0
	for i := 0; i < total; i++ {
		if i >= breakStart && i < breakEnd {
			continue
		}
		at := in.Start.Add(time.Duration(i) * time.Minute).In(loc)
		kind, pct := kindRegular, 100
		consider := func(k, p int) {
			if p > pct || (p == pct && k < kind) {
				kind, pct = k, p
			}
		}
		if worked >= regular && t.Overtime.MultiplierPercent > 0 {
			consider(kindOvertime, t.Overtime.MultiplierPercent)
		}
		if wd := at.Weekday(); (wd == time.Saturday || wd == time.Sunday) && t.Weekend.MultiplierPercent > 0 {
			consider(kindWeekend, t.Weekend.MultiplierPercent)
		}
		if nightFrom >= 0 && inWindow(at.Hour()*60+at.Minute(), nightFrom, nightTo) {
			consider(kindNight, t.Night.MultiplierPercent)
		}
		if _, seen := minutes[kind]; !seen {
			order = append(order, kind)
			percent[kind] = pct
		}
		minutes[kind]++
		worked++
	}
	if topUp := t.MinimumBillableMinutes - split.WorkedMinutes; topUp > 0 {
		order = append(order, kindMinimum)
		minutes[kindMinimum] = topUp
		percent[kindMinimum] = 100
	}
	q := Quote{Currency: t.Currency}
	for _, k := range order {
		l := Line{
			Description:       fmt.Sprintf("%s %s", in.Role, kindName[k]),
			Minutes:           minutes[k],
			HourlyRate:        rate.HourlyRate,
			MultiplierPercent: percent[k],
		}
		l.Amount = LineAmount(l.Minutes, l.HourlyRate, l.MultiplierPercent)
		q.Lines = append(q.Lines, l)
		q.Subtotal += l.Amount
	}
	q.Tax = Tax(q.Subtotal, t.TaxRateBasisPoints)
	q.Total = q.Subtotal + q.Tax
	return q, nil
}

// LineAmount is minutes x hourlyRate x multiplierPercent / 6000, rounded
// half up to the minor unit, in integers only.
func LineAmount(minutes int, hourlyRate int64, multiplierPercent int) int64 {
	return divHalfUp(int64(minutes)*hourlyRate*int64(multiplierPercent), 6000)
}

// Tax is subtotal x basisPoints / 10000, rounded half up.
func Tax(subtotal, basisPoints int64) int64 {
	return divHalfUp(subtotal*basisPoints, 10000)
}

// divHalfUp divides non-negative n by d rounding halves up.
func divHalfUp(n, d int64) int64 {
	return (2*n + d) / (2 * d)
}

func clockMinutes(hhmm string) int {
	var h, m int
	_, _ = fmt.Sscanf(hhmm, "%d:%d", &h, &m)
	return h*60 + m
}

func inWindow(m, from, to int) bool {
	if from < to {
		return m >= from && m < to
	}
	return m >= from || m < to
}
