package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/oapi-codegen/nullable"

	"github.com/prefect-go/prefect-server/gen/api"
	"github.com/prefect-go/prefect-server/openapi"
	"github.com/prefect-go/prefect-server/services/events"
	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/filter"
)

// flowRunLogsDownloadPageLimit is Prefect's FLOW_RUN_LOGS_DOWNLOAD_PAGE_LIMIT:
// the download streams the logs in pages of this size.
const flowRunLogsDownloadPageLimit = 1000

func logOut(l store.Log) api.Log {
	out := api.Log{
		Id:        l.ID,
		Created:   nullable.NewNullableWithValue(openapi.Time{Time: l.Created}),
		Updated:   nullable.NewNullableWithValue(openapi.Time{Time: l.Updated}),
		Name:      l.Name,
		Level:     l.Level,
		Message:   l.Message,
		Timestamp: openapi.Time{Time: l.Timestamp},
		FlowRunId: nullable.NewNullNullable[uuid.UUID](),
		TaskRunId: nullable.NewNullNullable[uuid.UUID](),
	}
	if l.FlowRunID != nil {
		out.FlowRunId = nullable.NewNullableWithValue(*l.FlowRunID)
	}
	if l.TaskRunID != nil {
		out.TaskRunId = nullable.NewNullableWithValue(*l.TaskRunID)
	}
	return out
}

func (h *handlers) CreateLogs(ctx context.Context, req api.CreateLogsRequestObject) (api.CreateLogsResponseObject, error) {
	var body []api.LogCreate
	if req.Body != nil {
		body = *req.Body
	}
	in := make([]store.LogCreate, len(body))
	for i, l := range body {
		in[i] = store.LogCreate{
			Name:      l.Name,
			Level:     l.Level,
			Message:   l.Message,
			Timestamp: l.Timestamp.Time,
			FlowRunID: present(l.FlowRunId),
			TaskRunID: present(l.TaskRunId),
		}
	}
	created, err := h.store.CreateLogs(ctx, in)
	if err != nil {
		return nil, err
	}
	h.publishLogs(ctx, created)
	// Prefect's route returns None with status 201: the body is JSON null.
	return api.CreateLogs201JSONResponse{}, nil
}

// publishLogs hands the stored logs to the broker's logs topic, where the
// log distributor (/api/logs/out) picks them up, as Prefect's
// logs.messaging.publish_logs does. The logs are already committed, so a
// broker failure is logged rather than failing the request: the client would
// otherwise retry and write every line twice.
func (h *handlers) publishLogs(ctx context.Context, logs []store.Log) {
	if len(logs) == 0 {
		return
	}
	msgs := make([]events.Message, 0, len(logs))
	for _, l := range logs {
		data, err := json.Marshal(logOut(l))
		if err != nil {
			h.log.ErrorContext(ctx, "encoding log for the stream failed", "error", err)
			return
		}
		msgs = append(msgs, events.Message{Data: data, Attributes: map[string]string{"log_id": l.ID.String()}})
	}
	if err := h.opts.Broker.Publish(ctx, events.TopicLogs, msgs...); err != nil {
		h.log.WarnContext(ctx, "publishing logs to the stream failed", "count", len(msgs), "error", err)
	}
}

func (h *handlers) ReadLogs(ctx context.Context, req api.ReadLogsRequestObject) (api.ReadLogsResponseObject, error) {
	b := req.Body
	if b == nil {
		b = &api.ReadLogsJSONRequestBody{}
	}
	limit, err := h.limit(present(b.Limit))
	if err != nil {
		return nil, err
	}
	sort := string(api.LogSortTIMESTAMPASC)
	if s := present(b.Sort); s != nil {
		sort = string(*s)
	}
	logs, err := h.store.ReadLogs(ctx, store.LogQuery{
		Filter: present(b.Logs),
		Sort:   sort,
		Limit:  limit,
		Offset: orDefault(present(b.Offset), 0),
	})
	if err != nil {
		return nil, err
	}
	out := make(api.ReadLogs200JSONResponse, len(logs))
	for i, l := range logs {
		out[i] = logOut(l)
	}
	return out, nil
}

func (h *handlers) DownloadLogs(ctx context.Context, req api.DownloadLogsRequestObject) (api.DownloadLogsResponseObject, error) {
	name, err := h.store.LogFlowRunName(ctx, req.Id)
	if err != nil {
		return nil, notFoundAs(err, "Flow run not found")
	}
	return logsDownload{ctx: ctx, h: h, flowRunID: req.Id, filename: name + "-logs.csv"}, nil
}

// logsDownload streams a flow run's logs as CSV, page by page, the way
// Prefect's StreamingResponse does: the status is sent before the first
// page is read, so a failure midway can only cut the stream short.
type logsDownload struct {
	ctx       context.Context
	h         *handlers
	flowRunID uuid.UUID
	filename  string
}

func (d logsDownload) VisitDownloadLogsResponse(w http.ResponseWriter) error {
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="flow-run-logs.csv"; filename*=UTF-8''`+quoteAll(d.filename))
	w.WriteHeader(http.StatusOK)
	var buf strings.Builder
	writeCSVRow(&buf, "timestamp", "level", "flow_run_id", "task_run_id", "message")
	if _, err := io.WriteString(w, buf.String()); err != nil {
		return nil // the client went away
	}
	f := &filter.LogFilter{FlowRunId: &filter.LogFilterFlowRunId{Any: []uuid.UUID{d.flowRunID}}}
	for offset := 0; ; offset += flowRunLogsDownloadPageLimit {
		logs, err := d.h.store.ReadLogs(d.ctx, store.LogQuery{Filter: f, Sort: string(api.LogSortTIMESTAMPASC), Limit: flowRunLogsDownloadPageLimit, Offset: offset})
		if err != nil {
			// Headers are out: all that is left is to end the stream early
			// and leave a trace.
			d.h.log.ErrorContext(d.ctx, "logs download failed", "flow_run_id", d.flowRunID, "error", err)
			return nil
		}
		if len(logs) == 0 {
			return nil
		}
		buf.Reset()
		for _, l := range logs {
			task := ""
			if l.TaskRunID != nil {
				task = l.TaskRunID.String()
			}
			writeCSVRow(&buf, pythonTime(l.Timestamp), strconv.Itoa(l.Level), d.flowRunID.String(), task, l.Message)
		}
		if _, err := io.WriteString(w, buf.String()); err != nil {
			return nil
		}
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
	}
}

// writeCSVRow writes one record as Python's csv.writer does by default:
// comma-separated, \r\n-terminated, a field quoted (quotes doubled) only when
// it holds a comma, a quote or a line break. encoding/csv differs: it also
// quotes leading spaces and rewrites \n inside fields under UseCRLF.
func writeCSVRow(b *strings.Builder, fields ...string) {
	for i, f := range fields {
		if i > 0 {
			b.WriteByte(',')
		}
		if strings.ContainsAny(f, ",\"\r\n") {
			b.WriteByte('"')
			b.WriteString(strings.ReplaceAll(f, `"`, `""`))
			b.WriteByte('"')
			continue
		}
		b.WriteString(f)
	}
	b.WriteString("\r\n")
}

// pythonTime renders a UTC timestamp as str() of Python's aware datetime,
// which is what Prefect's CSV holds: a space separator, microseconds only
// when non-zero, and the +00:00 offset.
func pythonTime(t time.Time) string {
	t = t.UTC()
	if t.Nanosecond()/1000 == 0 {
		return t.Format("2006-01-02 15:04:05") + "+00:00"
	}
	return t.Format("2006-01-02 15:04:05.000000") + "+00:00"
}

// quoteAll percent-encodes everything but RFC 3986's unreserved characters,
// as Python's urllib.parse.quote(s, safe="") does for the filename*
// parameter.
func quoteAll(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}
