// Command scheduleShift is the Lambda bootstrap of the scheduleShift HTTP function:
// every scheduling route: clients, shifts, timesheets, invoices, pricing, settings.
package main

import (
	"github.com/shiftflow/shiftflow/adapters/app"
	"github.com/shiftflow/shiftflow/adapters/lambda"
)

func main() {
	a := app.MustStart(app.ScheduleShift)
	lambda.StartHTTP(a.FunctionHandler(app.ScheduleShift), lambda.HTTPOptions{BasePath: a.Config.Env("API_BASE_PATH"), Logger: a.Logger})
}
