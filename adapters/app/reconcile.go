package app

import (
	"errors"
	"time"

	"github.com/shiftflow/shiftflow/adapters/config"
	"github.com/shiftflow/shiftflow/adapters/mongodb"
	"github.com/shiftflow/shiftflow/core/reconcile"
)

// The sent-record answers the reconciler's "was this invoice mailed?".
var _ reconcile.EmailRecords = (*mongodb.EmailRepo)(nil)

// reconcileConfig is RECONCILE_INTERVAL and RECONCILE_AFTER.
type reconcileConfig struct{ Interval, After time.Duration }

func loadReconcileConfig(getenv func(string) string) (reconcileConfig, error) {
	interval, ierr := config.Duration(getenv, "RECONCILE_INTERVAL", reconcile.DefaultInterval, time.Second, 24*time.Hour)
	after, aerr := config.Duration(getenv, "RECONCILE_AFTER", reconcile.DefaultAfter, time.Second, 7*24*time.Hour)
	return reconcileConfig{Interval: interval, After: after}, errors.Join(ierr, aerr)
}
