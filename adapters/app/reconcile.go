package app

import (
	"context"
	"errors"
	"time"

	"github.com/shiftflow/shiftflow/adapters/config"
	"github.com/shiftflow/shiftflow/adapters/mongodb"
	"github.com/shiftflow/shiftflow/core"
	"github.com/shiftflow/shiftflow/core/invoice"
	"github.com/shiftflow/shiftflow/core/job"
	"github.com/shiftflow/shiftflow/core/reconcile"
)

// reconcileConfig is RECONCILE_INTERVAL and RECONCILE_AFTER.
type reconcileConfig struct{ Interval, After time.Duration }

func loadReconcileConfig(getenv func(string) string) (reconcileConfig, error) {
	interval, ierr := config.Duration(getenv, "RECONCILE_INTERVAL", reconcile.DefaultInterval, time.Second, 24*time.Hour)
	after, aerr := config.Duration(getenv, "RECONCILE_AFTER", reconcile.DefaultAfter, time.Second, 7*24*time.Hour)
	return reconcileConfig{Interval: interval, After: after}, errors.Join(ierr, aerr)
}

// emailRecords is what the reconciler asks whether an invoice was mailed.
//
// TEMPORARY until the MongoDB sent-record (mongodb.EmailRepo.Sent, issue 9
// item 1, collection emails) is on main; then this becomes
// `return mongodb.NewEmailRepo(a.DB)`. Until then it answers from the job
// queue: a completed email job is "sent", a waiting, delayed, active or
// failed one is "not sent" (re-adding it is a no-op while the job
// exists), and no job at all is taken as "sent": the queue cannot tell a
// job Redis lost from one its retention removed after it ran, and mailing
// an invoice twice is worse than leaving a lost email to the sent-record.
func emailRecords(a *App) reconcile.EmailRecords { return queueEmailRecords{q: a.Queues} }

// The sent-record fits the port already.
var _ reconcile.EmailRecords = (*mongodb.EmailRepo)(nil)

type jobReader interface {
	GetJob(ctx context.Context, queue, id string) (*job.Job, error)
}

type queueEmailRecords struct{ q jobReader }

func (r queueEmailRecords) Sent(ctx context.Context, _ string, invoiceID string) (bool, error) {
	j, err := r.q.GetJob(ctx, job.EmailNotifications, invoice.MessageKey(invoiceID))
	if core.ErrorCode(err) == core.ENotFound {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return j.State == job.StateCompleted, nil
}
