package invoice

import (
	"context"
	"fmt"

	"github.com/shiftflow/shiftflow/core/job"
)

// QueueEmail adds the invoice's email-notifications job exactly as the
// invoice worker does (same name, data and job id: the message key), for the reconciler
// (core/reconcile), so a re-added job is the same job.
func QueueEmail(ctx context.Context, jobs job.Adder, d EmailJob, correlationID string) error {
	if _, err := jobs.Add(ctx, job.EmailNotifications, "invoice-email", d,
		job.Options{JobID: MessageKey(d.InvoiceID), CorrelationID: correlationID}); err != nil {
		return fmt.Errorf("add email job of invoice %s: %w", d.InvoiceID, err)
	}
	return nil
}
