// Command invoiceWorker is the Lambda bootstrap of the invoiceWorker drain:
// drains the invoice-generation and email-notifications queues. A schedule starts it; it returns a summary.
package main

import (
	"github.com/shiftflow/shiftflow/adapters/app"
	"github.com/shiftflow/shiftflow/adapters/lambda"
)

func main() {
	a := app.MustStart(app.InvoiceWorker)
	lambda.StartDrain(app.InvoiceWorker, a.Drain(app.InvoiceWorker), a.Logger)
}
