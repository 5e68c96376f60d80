// Command mongoserver runs FerretDB on SQLite as a standalone MongoDB
// wire-protocol server for the test harness (infra/test.sh) and for
// developers without MongoDB. It is never linked into a function binary.
//
//	go run ./infra/mongoserver -addr 127.0.0.1:27017 -dir .data/mongo
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/shiftflow/shiftflow/adapters/embedded"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:27017", "listen address")
	dir := flag.String("dir", ".data/mongo", "SQLite data directory")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	m, err := embedded.StartMongo(*dir, *addr, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		fmt.Fprintln(os.Stderr, "mongoserver:", err)
		os.Exit(1)
	}
	fmt.Println(m.URI)
	<-ctx.Done()
	m.Close()
}
