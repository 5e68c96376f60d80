// Command completeShift is the Lambda bootstrap of the completeShift HTTP function:
// POST /shifts/{id}/complete.
package main

import (
	"github.com/shiftflow/shiftflow/adapters/app"
	"github.com/shiftflow/shiftflow/adapters/lambda"
)

func main() {
	a := app.MustStart(app.CompleteShift)
	lambda.StartHTTP(a.FunctionHandler(app.CompleteShift), lambda.HTTPOptions{BasePath: a.Config.Env("API_BASE_PATH"), Logger: a.Logger})
}
