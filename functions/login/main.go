// Command login is the Lambda bootstrap of the login HTTP function:
// POST /login and the admin user routes (/users).
package main

import (
	"github.com/shiftflow/shiftflow/adapters/app"
	"github.com/shiftflow/shiftflow/adapters/lambda"
)

func main() {
	a := app.MustStart(app.Login)
	lambda.StartHTTP(a.FunctionHandler(app.Login), lambda.HTTPOptions{BasePath: a.Config.Env("API_BASE_PATH"), Logger: a.Logger})
}
