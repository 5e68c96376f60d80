package main

import (
	"net/http"
	"time"
)

// serverBounds bound the local runner's and the container mode's HTTP
// server. A client must send its headers within ReadHeader and its whole
// request within Read (a client that announces a body and sends a few
// bytes is cut off, not held open), may take Write to read the answer, and
// an idle keep-alive connection is closed after Idle. Request bodies are
// bounded separately (httpapi.MaxBodyBytes).
type serverBounds struct {
	ReadHeader, Read, Write, Idle time.Duration
	MaxHeaderBytes                int
}

var defaultBounds = serverBounds{
	ReadHeader: 10 * time.Second, Read: 30 * time.Second, Write: 60 * time.Second, Idle: 2 * time.Minute,
	MaxHeaderBytes: 64 << 10,
}

func newServer(h http.Handler, b serverBounds) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: b.ReadHeader,
		ReadTimeout:       b.Read,
		WriteTimeout:      b.Write,
		IdleTimeout:       b.Idle,
		MaxHeaderBytes:    b.MaxHeaderBytes,
	}
}
