package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prefect-go/prefect-server/services/config"
	"github.com/prefect-go/prefect-server/services/eventpersister"
	"github.com/prefect-go/prefect-server/services/events"
	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/taskrunrecorder"
)

// backgroundService is one loop the server runs beside the API; run blocks
// until its context ends and returns after its final flush.
type backgroundService struct {
	name string
	// group is the broker consumer group the service reads; it is declared
	// before the API accepts requests so no event published meanwhile is
	// missed by the in-memory broker.
	group string
	run   func(ctx context.Context) error
}

// backgroundServices lists the enabled services, as Prefect's
// PREFECT_SERVER_SERVICES_<NAME>_ENABLED settings decide.
func backgroundServices(cfg *config.Settings, st store.Store, broker events.Broker, logger *slog.Logger) []backgroundService {
	var out []backgroundService
	if cfg.ServiceEnabled("task_run_recorder") {
		r := taskrunrecorder.New(st, broker, logger.With("service", "task_run_recorder"), taskrunrecorder.Options{
			BatchSize:     cfg.Int("server.services.task_run_recorder.batch_size"),
			FlushInterval: seconds(cfg.Float("server.services.task_run_recorder.flush_interval")),
		})
		out = append(out, backgroundService{name: "task_run_recorder", group: taskrunrecorder.Group, run: r.Run})
	}
	if cfg.ServiceEnabled("event_persister") {
		p := eventpersister.New(st, broker, logger.With("service", "event_persister"), eventpersister.Options{
			BatchSize:     cfg.Int("server.services.event_persister.batch_size"),
			FlushInterval: seconds(cfg.Float("server.services.event_persister.flush_interval")),
			QueueMaxSize:  cfg.Int("server.services.event_persister.queue_max_size"),
		})
		out = append(out, backgroundService{name: "event_persister", group: eventpersister.Group, run: p.Run})
	}
	return out
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// startServices declares the services' consumer groups, then runs each in
// its own goroutine. stop cancels them and waits until every one has
// flushed and returned.
func startServices(ctx context.Context, broker events.Broker, svcs []backgroundService, log *slog.Logger) (stop func(), err error) {
	for _, s := range svcs {
		if s.group == "" {
			continue
		}
		if _, err := broker.Subscribe(events.TopicEvents, s.group); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, s := range svcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			log.Info("service started", "service", s.name)
			if err := s.run(ctx); err != nil && ctx.Err() == nil {
				log.Error("service stopped with an error", "service", s.name, "error", err)
				return
			}
			log.Info("service stopped", "service", s.name)
		}()
	}
	return func() { cancel(); wg.Wait() }, nil
}
