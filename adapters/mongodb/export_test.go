package mongodb

// ForceMongoDBBranch makes r behave as on a real MongoDB (no leases, the
// version-filtered updates), whatever the server says it is, so that the
// code only MongoDB would run is exercised on the wire-protocol server.
// FerretDB does not run a conditioned update atomically, so tests that use
// it must be sequential (docs/domain.md, "What only a real MongoDB adds").
func ForceMongoDBBranch(r *ShiftRepo) {
	r.detect.Do(func() {})
	r.useLease = false
}
