// Command onShiftCompleted is the Lambda bootstrap of the onShiftCompleted drain:
// the shift.completed subscriber: relays outboxes, upserts worked time, adds the invoice job. A schedule starts it; it returns a summary.
package main

import (
	"github.com/shiftflow/shiftflow/adapters/app"
	"github.com/shiftflow/shiftflow/adapters/lambda"
)

func main() {
	a := app.MustStart(app.OnShiftCompleted)
	lambda.StartDrain(app.OnShiftCompleted, a.Drain(app.OnShiftCompleted), a.Logger)
}
