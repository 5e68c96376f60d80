// Package lambda runs shiftflow's functions on AWS Lambda: HTTP functions
// behind API Gateway (HTTP API payload 2.0 and REST API payload 1.0,
// converted by aws-lambda-go-api-proxy) and drains started by EventBridge
// schedules. It is generic over an http.Handler and a drain function, so
// the composition root decides what runs and this package only decides how
// an event becomes a request and a response becomes Lambda's answer.
package lambda

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/textproto"
	"strings"

	"github.com/aws/aws-lambda-go/events"
	awslambda "github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/awslabs/aws-lambda-go-api-proxy/core"

	"github.com/shiftflow/shiftflow/adapters/httpapi"
	"github.com/shiftflow/shiftflow/adapters/logging"
	shiftcore "github.com/shiftflow/shiftflow/core"
)

// HTTPOptions tune the HTTP adapter.
type HTTPOptions struct {
	// BasePath is removed from the front of every path before routing, for
	// a custom domain whose API mapping adds a prefix (e.g. "/v1").
	BasePath string
	// Logger receives one line per failed conversion; nil uses slog.Default.
	Logger *slog.Logger
}

// HTTP adapts an http.Handler to API Gateway proxy events of both payload
// versions. It implements aws-lambda-go's lambda.Handler so that the
// payload can be inspected before it is decoded into one event type.
type HTTP struct {
	h        http.Handler
	basePath string
	log      *slog.Logger
}

var _ awslambda.Handler = (*HTTP)(nil)

// NewHTTP returns the adapter for h.
func NewHTTP(h http.Handler, o HTTPOptions) *HTTP {
	bp := strings.TrimRight(strings.TrimSpace(o.BasePath), "/")
	if bp != "" && !strings.HasPrefix(bp, "/") {
		bp = "/" + bp
	}
	l := o.Logger
	if l == nil {
		l = slog.Default()
	}
	return &HTTP{h: h, basePath: bp, log: l}
}

// StartHTTP serves h as this process's Lambda handler; it never returns.
func StartHTTP(h http.Handler, o HTTPOptions) {
	awslambda.Start(NewHTTP(h, o))
}

// probe holds just enough of an event to tell its kind.
type probe struct {
	Version        string `json:"version"`
	HTTPMethod     string `json:"httpMethod"`
	RouteKey       string `json:"routeKey"`
	RequestContext struct {
		HTTP struct {
			Method string `json:"method"`
		} `json:"http"`
	} `json:"requestContext"`
	DetailType string `json:"detail-type"`
}

// ErrUnsupportedEvent is returned for payloads that are not API Gateway
// proxy events (a schedule pointed at an HTTP function, for example).
var ErrUnsupportedEvent = errors.New("unsupported event: expected an API Gateway proxy event (payload format 1.0 or 2.0)")

// Invoke converts one API Gateway event, runs the handler and returns the
// matching proxy response.
func (a *HTTP) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	var p probe
	if err := json.Unmarshal(payload, &p); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnsupportedEvent, err)
	}
	switch {
	case p.Version == "2.0" || p.RequestContext.HTTP.Method != "":
		var ev events.APIGatewayV2HTTPRequest
		if err := json.Unmarshal(payload, &ev); err != nil {
			return nil, fmt.Errorf("decode API Gateway v2 event: %w", err)
		}
		resp := a.serveV2(ctx, ev)
		return json.Marshal(resp)
	case p.HTTPMethod != "":
		var ev events.APIGatewayProxyRequest
		if err := json.Unmarshal(payload, &ev); err != nil {
			return nil, fmt.Errorf("decode API Gateway v1 event: %w", err)
		}
		resp := a.serveV1(ctx, ev)
		return json.Marshal(resp)
	}
	if p.DetailType != "" {
		return nil, fmt.Errorf("%w (got an EventBridge %q event)", ErrUnsupportedEvent, p.DetailType)
	}
	return nil, ErrUnsupportedEvent
}

// serveV2 handles an HTTP API (payload 2.0) event.
func (a *HTTP) serveV2(ctx context.Context, ev events.APIGatewayV2HTTPRequest) events.APIGatewayV2HTTPResponse {
	if ev.RawPath == "" {
		ev.RawPath = ev.RequestContext.HTTP.Path
	}
	// A named stage appears at the front of rawPath ("/prod/shifts"); the
	// $default stage adds nothing. Routes never include the stage.
	if st := ev.RequestContext.Stage; st != "" && st != "$default" {
		ev.RawPath = stripPrefix(ev.RawPath, "/"+st)
	}
	ev.RawPath = stripPrefix(ev.RawPath, a.basePath)

	var acc core.RequestAccessorV2
	r, err := acc.EventToRequestWithContext(ctx, ev)
	if err != nil {
		a.log.ErrorContext(ctx, "convert API Gateway v2 event", "err", err, "routeKey", ev.RouteKey)
		return v2Error(http.StatusBadRequest, shiftcore.Invalid("request could not be read: %v", err))
	}
	// HTTP API joins repeated headers with commas into one value, and the
	// proxy then splits every non-singleton header on commas, which cuts
	// values that legitimately hold commas (dates, quoted strings, user
	// agents). Put back the header exactly as the client sent it: one
	// comma-joined field is what RFC 9110 says repeated fields mean.
	for k, v := range ev.Headers {
		r.Header[textproto.CanonicalMIMEHeaderKey(k)] = []string{v}
	}
	// Cookies arrive separately; the Cookie header joins them with "; ".
	r.Header.Del("Cookie")
	if len(ev.Cookies) > 0 {
		r.Header.Set("Cookie", strings.Join(ev.Cookies, "; "))
	}
	r = r.WithContext(withIDs(r.Context(), ev.RequestContext.RequestID))

	w := core.NewProxyResponseWriterV2()
	serve(a.h, w, r)
	resp, err := w.GetProxyResponse()
	if err != nil {
		// serve always sets a status, so this is a writer failure.
		a.log.ErrorContext(ctx, "build API Gateway v2 response", "err", err)
		return v2Error(http.StatusInternalServerError, shiftcore.Errorf(shiftcore.EInternal, "internal error"))
	}
	return resp
}

// serveV1 handles a REST API (payload 1.0) event. Its path never holds the
// stage, only a custom domain's base path.
func (a *HTTP) serveV1(ctx context.Context, ev events.APIGatewayProxyRequest) events.APIGatewayProxyResponse {
	ev.Path = stripPrefix(ev.Path, a.basePath)
	var acc core.RequestAccessor
	r, err := acc.EventToRequestWithContext(ctx, ev)
	if err != nil {
		a.log.ErrorContext(ctx, "convert API Gateway v1 event", "err", err, "path", ev.Path)
		return v1Error(http.StatusBadRequest, shiftcore.Invalid("request could not be read: %v", err))
	}
	r = r.WithContext(withIDs(r.Context(), ev.RequestContext.RequestID))
	w := core.NewProxyResponseWriter()
	serve(a.h, w, r)
	resp, err := w.GetProxyResponse()
	if err != nil {
		a.log.ErrorContext(ctx, "build API Gateway v1 response", "err", err)
		return v1Error(http.StatusInternalServerError, shiftcore.Errorf(shiftcore.EInternal, "internal error"))
	}
	// MultiValueHeaders carries every value (Set-Cookie in particular);
	// Headers would repeat the last of each and is left empty on purpose.
	resp.Headers = nil
	return resp
}

// withIDs puts the gateway's request id and Lambda's request id into the
// context's log attributes, so every log line of the request carries them.
func withIDs(ctx context.Context, gatewayID string) context.Context {
	args := []any{}
	if gatewayID != "" {
		args = append(args, "apiRequestId", gatewayID)
	}
	if lc, ok := lambdacontext.FromContext(ctx); ok && lc.AwsRequestID != "" {
		args = append(args, "awsRequestId", lc.AwsRequestID)
	}
	if len(args) == 0 {
		return ctx
	}
	return logging.With(ctx, args...)
}

// stripPrefix removes prefix from p when p is the prefix or continues it
// with a '/': "/prod" strips "/prod/x" and "/prod" but not "/production".
func stripPrefix(p, prefix string) string {
	if prefix == "" || prefix == "/" {
		return p
	}
	if p == prefix {
		return "/"
	}
	if strings.HasPrefix(p, prefix+"/") {
		return p[len(prefix):]
	}
	return p
}

// statusWriter remembers whether the handler chose a status.
type statusWriter struct {
	http.ResponseWriter
	wrote bool
}

func (s *statusWriter) WriteHeader(code int) {
	s.wrote = true
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if !s.wrote {
		s.WriteHeader(http.StatusOK)
	}
	return s.ResponseWriter.Write(b)
}

// serve runs h so that every response has a status: a handler that writes
// nothing answers 200 as net/http would (the proxy would otherwise fail
// with "Status code not set"), and a panic answers a JSON 500 instead of
// killing the runtime mid-invocation.
func serve(h http.Handler, w http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				// Same meaning as in net/http: abort quietly.
				p = "handler aborted"
			}
			slog.ErrorContext(r.Context(), "handler panicked", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(p))
			if !sw.wrote {
				for k := range w.Header() {
					w.Header().Del(k)
				}
				httpapi.WriteError(sw, r, shiftcore.Errorf(shiftcore.EInternal, "internal error"))
			}
			return
		}
		if !sw.wrote {
			sw.WriteHeader(http.StatusOK)
		}
	}()
	h.ServeHTTP(sw, r)
}

func errorJSON(err error) string {
	var body httpapi.ErrorBody
	body.Error.Code = shiftcore.ErrorCode(err)
	body.Error.Message = shiftcore.ErrorMessage(err)
	var b bytes.Buffer
	_ = json.NewEncoder(&b).Encode(body)
	return b.String()
}

func v2Error(status int, err error) events.APIGatewayV2HTTPResponse {
	return events.APIGatewayV2HTTPResponse{
		StatusCode: status,
		Headers:    map[string]string{"Content-Type": "application/json"},
		Body:       errorJSON(err),
	}
}

func v1Error(status int, err error) events.APIGatewayProxyResponse {
	return events.APIGatewayProxyResponse{
		StatusCode:        status,
		MultiValueHeaders: map[string][]string{"Content-Type": {"application/json"}},
		Body:              errorJSON(err),
	}
}
