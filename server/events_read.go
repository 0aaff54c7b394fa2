package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/oapi-codegen/nullable"

	"github.com/prefect-go/prefect-server/gen/api"
	"github.com/prefect-go/prefect-server/openapi"
	"github.com/prefect-go/prefect-server/services/events"
	"github.com/prefect-go/prefect-server/services/store"
)

// interactivePageSize is Prefect's INTERACTIVE_PAGE_SIZE: the default and
// the maximum page of POST /events/filter.
const interactivePageSize = 50

// eventPageToken is what a next-page token carries (Prefect's
// to_page_token): the filter with its clock defaults resolved, so every page
// sees the same window, the total counted for the first page, and where the
// next page starts.
type eventPageToken struct {
	Filter   store.EventFilter `json:"filter"`
	Count    int64             `json:"count"`
	PageSize int               `json:"page_size"`
	Offset   int               `json:"offset"`
}

// eventFilterIn converts the generated filter type, whose unions are opaque,
// into the store's by way of its JSON (the wire form both share).
func eventFilterIn(f *api.EventFilter) (store.EventFilter, error) {
	var out store.EventFilter
	if f == nil {
		return out, nil
	}
	b, err := json.Marshal(f)
	if err != nil {
		return out, errUnprocessable(fmt.Sprintf("Invalid filter: %v", err))
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return out, errUnprocessable(fmt.Sprintf("Invalid filter: %v", err))
	}
	return out, nil
}

func (h *handlers) ReadEvents(ctx context.Context, req api.ReadEventsRequestObject) (api.ReadEventsResponseObject, error) {
	limit := interactivePageSize
	var f store.EventFilter
	if b := req.Body; b != nil {
		if l := present(b.Limit); l != nil {
			limit = *l
		}
		var err error
		if f, err = eventFilterIn(present(b.Filter)); err != nil {
			return nil, err
		}
	}
	if limit < 0 || limit > interactivePageSize {
		return nil, errUnprocessable(fmt.Sprintf("limit must be between 0 and %d", interactivePageSize))
	}
	f = f.WithDefaults(time.Now())
	page, err := h.eventPage(ctx, eventPageToken{Filter: f, PageSize: limit}, true)
	if err != nil {
		return nil, err
	}
	return api.ReadEvents200JSONResponse(page), nil
}

func (h *handlers) ReadAccountEventsPage(ctx context.Context, req api.ReadAccountEventsPageRequestObject) (api.ReadAccountEventsPageResponseObject, error) {
	tok, ok := decodePageToken(req.Params.PageToken)
	if !ok {
		// Prefect answers a token it cannot read with a bare 403.
		return nil, &httpError{http.StatusForbidden, "Forbidden"}
	}
	page, err := h.eventPage(ctx, tok, false)
	if err != nil {
		return nil, err
	}
	return api.ReadAccountEventsPage200JSONResponse(page), nil
}

// eventPage reads the page tok describes; first pages count the total,
// later ones reuse the count the token carries, as Prefect does.
func (h *handlers) eventPage(ctx context.Context, tok eventPageToken, first bool) (api.EventPage, error) {
	if first {
		n, err := h.store.CountEvents(ctx, tok.Filter)
		if err != nil {
			return api.EventPage{}, err
		}
		tok.Count = n
	}
	evs := []events.ReceivedEvent{}
	if tok.PageSize > 0 {
		var err error
		evs, err = h.store.ReadEvents(ctx, store.EventQuery{Filter: tok.Filter, Limit: tok.PageSize, Offset: tok.Offset})
		if err != nil {
			return api.EventPage{}, err
		}
	}
	page := api.EventPage{Events: evs, Total: int(tok.Count), NextPage: nullable.NewNullNullable[string]()}
	if next := int64(tok.Offset + tok.PageSize); next < tok.Count && tok.PageSize > 0 {
		tok.Offset += tok.PageSize
		link, err := h.nextPageLink(ctx, tok)
		if err != nil {
			return api.EventPage{}, err
		}
		page.NextPage = nullable.NewNullableWithValue(link)
	}
	return page, nil
}

// nextPageLink is Prefect's generate_next_page_link: the token is base64 of
// the JSON, and base64 again in the URL (escaped here, so that '+' survives
// query parsing).
func (h *handlers) nextPageLink(ctx context.Context, tok eventPageToken) (string, error) {
	raw, err := json.Marshal(tok)
	if err != nil {
		return "", err
	}
	inner := base64.StdEncoding.EncodeToString(raw)
	outer := base64.StdEncoding.EncodeToString([]byte(inner))
	return baseURL(ctx) + h.opts.BasePath + "/events/filter/next?page-token=" + url.QueryEscape(outer), nil
}

// baseURL is the scheme and authority the client used, like Starlette's
// request.base_url (the Host header), which withRequestMeta keeps in the
// context because the strict handlers do not see the request.
func baseURL(ctx context.Context) string {
	if base := metaFrom(ctx).base; base != "" {
		return base
	}
	if addr, ok := ctx.Value(http.LocalAddrContextKey).(net.Addr); ok && addr != nil {
		return "http://" + addr.String()
	}
	return "http://localhost"
}

// decodePageToken undoes nextPageLink's encoding. Query parsing may have
// turned '+' into ' ' when a client did not escape the link; either form is
// read.
func decodePageToken(s string) (eventPageToken, bool) {
	var tok eventPageToken
	s = strings.ReplaceAll(s, " ", "+")
	inner, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(inner) == 0 {
		return tok, false
	}
	raw, err := base64.StdEncoding.DecodeString(string(inner))
	if err != nil {
		return tok, false
	}
	if err := json.Unmarshal(raw, &tok); err != nil {
		return tok, false
	}
	if tok.PageSize < 0 || tok.PageSize > interactivePageSize || tok.Offset < 0 || tok.Count < 0 ||
		tok.Filter.Occurred.Since.IsZero() || tok.Filter.Occurred.Until.IsZero() {
		return tok, false
	}
	return tok, true
}

// countPivot is Prefect's PIVOT_DATETIME: time buckets are counted from
// this Monday, before the earliest possible event.
var countPivot = time.Date(2024, 4, 1, 0, 0, 0, 0, time.UTC)

// maxCountBuckets is Prefect's MAX_ALLOWED_BUCKETS.
const maxCountBuckets = 1000

var timeUnits = map[api.TimeUnit]time.Duration{
	api.TimeUnitWeek:   7 * 24 * time.Hour,
	api.TimeUnitDay:    24 * time.Hour,
	api.TimeUnitHour:   time.Hour,
	api.TimeUnitMinute: time.Minute,
	api.TimeUnitSecond: time.Second,
}

func (h *handlers) CountAccountEvents(ctx context.Context, req api.CountAccountEventsRequestObject) (api.CountAccountEventsResponseObject, error) {
	unit, interval := api.TimeUnitDay, 1.0
	var f store.EventFilter
	if b := req.Body; b != nil {
		if u := present(b.TimeUnit); u != nil {
			unit = *u
		}
		if i := present(b.TimeInterval); i != nil {
			interval = *i
		}
		var err error
		if f, err = eventFilterIn(present(b.Filter)); err != nil {
			return nil, err
		}
	}
	now := time.Now()
	f = f.WithDefaults(now)
	unitLen, ok := timeUnits[unit]
	if !ok {
		return nil, errUnprocessable(fmt.Sprintf("unknown time unit %q", unit))
	}
	var out []api.EventCount
	switch req.Countable {
	case api.CountableDay, api.CountableTime:
		if req.Countable == api.CountableDay {
			unit, unitLen, interval = api.TimeUnitDay, 24*time.Hour, 1
		}
		if interval < 0.01 {
			return nil, errUnprocessable("The minimum interval is 0.01")
		}
		bucket := time.Duration(float64(unitLen) * interval).Truncate(time.Microsecond)
		if bucket <= 0 {
			return nil, errUnprocessable("The minimum interval is 0.01")
		}
		since, until := f.Occurred.Since.Time, f.Occurred.Until.Time
		if n := ceilDiv(until.Sub(since), bucket); n > maxCountBuckets {
			return nil, errUnprocessable(fmt.Sprintf("The given interval would create %d buckets, which is too many. Please increase the interval or reduce the time range to produce %d buckets or fewer.", n, maxCountBuckets))
		}
		groups, err := h.store.CountEventsBy(ctx, store.EventCountQuery{Filter: f, By: "time", Pivot: countPivot, Bucket: bucket})
		if err != nil {
			return nil, err
		}
		out = timeBuckets(since, until, now, unit, bucket, groups)
	case api.CountableEvent, api.CountableResource:
		groups, err := h.store.CountEventsBy(ctx, store.EventCountQuery{Filter: f, By: string(req.Countable)})
		if err != nil {
			return nil, err
		}
		out = latestLabels(groups)
	default:
		return nil, errUnprocessable(fmt.Sprintf("cannot count by %q", req.Countable))
	}
	return api.CountAccountEvents200JSONResponse(out), nil
}

func ceilDiv(d, by time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + by - 1) / by)
}

func floorDiv(d, by time.Duration) int64 {
	q := d / by
	if d%by != 0 && d < 0 {
		q--
	}
	return int64(q)
}

// timeBuckets is Prefect's process_time_based_counts: every bucket from the
// one holding since to the one holding until (or the end of the current
// unit, for windows reaching into the future) appears, empty ones with 0,
// numbered from 0 and labelled with their start.
func timeBuckets(since, until, now time.Time, unit api.TimeUnit, bucket time.Duration, groups []store.EventGroup) []api.EventCount {
	end := until
	if end.After(now) {
		end = endOfPeriod(now.UTC(), unit)
	}
	first := floorDiv(since.Sub(countPivot), bucket)
	out := []api.EventCount{}
	for start := countPivot.Add(time.Duration(first) * bucket); start.Before(end); start = start.Add(bucket) {
		i := len(out)
		out = append(out, api.EventCount{
			Value:     strconv.Itoa(i),
			Label:     pythonISO(start),
			StartTime: openapi.Time{Time: start},
			EndTime:   openapi.Time{Time: start.Add(bucket - time.Microsecond)},
		})
	}
	for _, g := range groups {
		idx, err := strconv.ParseInt(g.Value, 10, 64)
		if err != nil {
			continue
		}
		if i := idx - first; i >= 0 && i < int64(len(out)) {
			out[i].Count += int(g.Count)
		}
	}
	return out
}

// endOfPeriod is the last microsecond of the unit holding t (weeks end on
// Sunday), as Prefect's end_of_period.
func endOfPeriod(t time.Time, unit api.TimeUnit) time.Time {
	y, m, d := t.Date()
	last := 999999 * time.Microsecond
	switch unit {
	case api.TimeUnitSecond:
		return t.Truncate(time.Second).Add(last)
	case api.TimeUnitMinute:
		return t.Truncate(time.Minute).Add(59*time.Second + last)
	case api.TimeUnitHour:
		return t.Truncate(time.Hour).Add(59*time.Minute + 59*time.Second + last)
	case api.TimeUnitWeek:
		d += (7 - int(t.Weekday())) % 7
	}
	return time.Date(y, m, d, 23, 59, 59, int(last), time.UTC)
}

// pythonISO is datetime.isoformat() of an aware UTC datetime.
func pythonISO(t time.Time) string {
	t = t.UTC()
	if t.Nanosecond()/1000 == 0 {
		return t.Format("2006-01-02T15:04:05") + "+00:00"
	}
	return t.Format("2006-01-02T15:04:05.000000") + "+00:00"
}

// latestLabels is the re-aggregation of Prefect's count query: one row per
// value, labelled with the label of its most recent events, ordered by count
// (descending) and label.
func latestLabels(groups []store.EventGroup) []api.EventCount {
	type acc struct {
		label          string
		labelAt        time.Time
		count          int64
		oldest, latest time.Time
	}
	byValue := map[string]*acc{}
	var order []string
	for _, g := range groups {
		a, ok := byValue[g.Value]
		if !ok {
			a = &acc{label: g.Label, labelAt: g.Latest, oldest: g.Oldest, latest: g.Latest}
			byValue[g.Value] = a
			order = append(order, g.Value)
		}
		if g.Latest.After(a.labelAt) {
			a.label, a.labelAt = g.Label, g.Latest
		}
		a.count += g.Count
		if g.Oldest.Before(a.oldest) {
			a.oldest = g.Oldest
		}
		if g.Latest.After(a.latest) {
			a.latest = g.Latest
		}
	}
	out := make([]api.EventCount, 0, len(order))
	for _, v := range order {
		a := byValue[v]
		out = append(out, api.EventCount{Value: v, Label: a.label, Count: int(a.count), StartTime: openapi.Time{Time: a.oldest}, EndTime: openapi.Time{Time: a.latest}})
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Label < out[j].Label
	})
	return out
}
