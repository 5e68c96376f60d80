package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/shiftflow/shiftflow/adapters/app"
	"github.com/shiftflow/shiftflow/adapters/lambda"
	"github.com/shiftflow/shiftflow/core/auth"
	"github.com/shiftflow/shiftflow/core/shift"
)

// invoke delivers the event in file to function through the Lambda
// adapter, byte for byte as API Gateway or EventBridge would, and prints
// the function's answer. ${VAR} in the file is replaced from the
// environment first; DEMO_TOKEN is a fresh token of the demo admin, so the
// sample HTTP events work against the demo data as they are.
func invoke(ctx context.Context, logger *slog.Logger, function, file string, out io.Writer) error {
	isHTTP := slices.Contains(app.HTTPFunctions(), function)
	if !isHTTP && !slices.Contains(app.DrainFunctions(), function) {
		return fmt.Errorf("%w %q; one of %v %v", errUnknownFunction, function, app.HTTPFunctions(), app.DrainFunctions())
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	a, srv, err := build(ctx, logger, false)
	if err != nil {
		return err
	}
	defer srv.Close()
	defer a.Close(context.Background())
	var login demoLogin
	if seedWanted(true) {
		if login, err = seed(ctx, a); err != nil {
			return err
		}
	} else if bytes.Contains(raw, []byte("DEMO_")) || bytes.Contains(raw, []byte("SHIFT_ID")) {
		return fmt.Errorf("%s uses the demo data, which is not seeded on a real MONGODB_URI: set SEED_DEMO=true, or replace the ${...} placeholders", file)
	}
	vars := map[string]string{"DEMO_CLIENT_ID": login.ClientID}
	if bytes.Contains(raw, []byte("SHIFT_ID")) && os.Getenv("SHIFT_ID") == "" {
		// Without SHIFT_ID, complete the demo organisation's most recently
		// scheduled shift (e.g. the one the scheduleShift sample created).
		shifts, err := a.Scheduler.List(ctx, login.Org, shift.Filter{Status: shift.StatusScheduled})
		if err != nil {
			return err
		}
		if len(shifts) == 0 {
			return fmt.Errorf("no scheduled shift to use for SHIFT_ID: set SHIFT_ID, or first run: go run ./local invoke scheduleShift functions/scheduleShift/event.json")
		}
		latest := shifts[0]
		for _, s := range shifts {
			if s.CreatedAt.After(latest.CreatedAt) {
				latest = s
			}
		}
		vars["SHIFT_ID"] = latest.ID
	}
	if bytes.Contains(raw, []byte("DEMO_TOKEN")) {
		// Signed directly: a sample invoke must not spend the demo
		// account's login budget (the quick start logs in over HTTP too).
		tok, err := a.IssueToken(auth.Principal{UserID: login.UserID, OrganizationID: login.Org, Role: auth.RoleAdmin})
		if err != nil {
			return fmt.Errorf("sign a token for the demo admin (DEMO_TOKEN): %w", err)
		}
		vars["DEMO_TOKEN"] = tok.Value
	}
	payload := os.Expand(string(raw), func(k string) string {
		if v, ok := vars[k]; ok {
			return v
		}
		return os.Getenv(k)
	})

	// A Lambda invocation carries its deadline; give the drain the same
	// kind of budget the template gives the function.
	ictx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var resp []byte
	if isHTTP {
		resp, err = lambda.NewHTTP(a.FunctionHandler(function), lambda.HTTPOptions{Logger: a.Logger}).Invoke(ictx, []byte(payload))
	} else {
		resp, err = lambda.NewDrain(function, a.Drain(function), a.Logger).Invoke(ictx, []byte(payload))
	}
	if err != nil {
		return fmt.Errorf("%s: %w", function, err)
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, resp, "", "  ") != nil {
		pretty.Write(resp)
	}
	pretty.WriteByte('\n')
	_, err = out.Write(pretty.Bytes())
	return err
}
