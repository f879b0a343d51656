package main

import (
	"context"
	"sync"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/config"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/mailbox"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
	"github.com/graphwebhooks/graph-webhooks-go/internal/refusals"
	"github.com/graphwebhooks/graph-webhooks-go/internal/subscription"
)

// mailboxRunTime bounds the timer's mailbox run: the timer's own deadline is renewtimer's (4 min), well
// inside host.json's functionTimeout (5 min), and the directory's subscriptions take a few seconds of it.
const mailboxRunTime = 3 * time.Minute

// wireMailboxes gives the app GRAPH_MAILBOXES' subscriptions (through the keeper's runs and lifecycle
// handling) and the mailbox catch-up. Clients stay lazy: nothing is built until a mailbox needs it.
func (a *app) wireMailboxes(cfg *config.Config, now func() time.Time) {
	a.refusals = sync.OnceValues(func() (*refusals.Store, error) {
		if err := cfg.Check(config.Storage, config.StateTable); err != nil {
			return nil, err
		}
		return refusals.New(cfg.Storage, cfg.StateTable, refusals.Options{})
	})
	a.catchUp = &mailbox.CatchUp{
		Lister: lazyLister(a.graph),
		Enqueue: func(ctx context.Context, text []byte) error {
			q, err := a.queue()
			if err != nil {
				return err
			}
			return q.Enqueue(ctx, message.WorkQueue, text, 0)
		},
		Tenant: cfg.TenantID,
		Now:    now,
	}
	mk := subscription.NewMailboxKeeper(cfg, func() (subscription.MailboxGraph, error) { return a.graph() },
		lazyRefusals(a.refusals), now, subscription.MailboxOptions{
			RunTime: mailboxRunTime,
			Gate:    a.gate,
			Gap: func(ctx context.Context, resource, _ string) error {
				_, _, err := a.catchUp.Run(ctx, resource, "")
				return err
			},
		})
	a.keeper.SetMailboxes(mk)
}

// lazyLister builds the Graph client on the first catch-up.
type lazyLister func() (*graph.Client, error)

func (l lazyLister) ListMailboxItemsSince(ctx context.Context, user, kind string, since time.Time, max int) ([]string, bool, error) {
	c, err := l()
	if err != nil {
		return nil, false, err
	}
	return c.ListMailboxItemsSince(ctx, user, kind, since, max)
}

// lazyRefusals opens the refusal store on first use.
type lazyRefusals func() (*refusals.Store, error)

func (l lazyRefusals) Refusals(ctx context.Context) (map[string]subscription.Refusal, error) {
	s, err := l()
	if err != nil {
		return nil, err
	}
	return s.Refusals(ctx)
}

func (l lazyRefusals) PutRefusal(ctx context.Context, r subscription.Refusal) error {
	s, err := l()
	if err != nil {
		return err
	}
	return s.PutRefusal(ctx, r)
}

func (l lazyRefusals) DeleteRefusal(ctx context.Context, resource string) error {
	s, err := l()
	if err != nil {
		return err
	}
	return s.DeleteRefusal(ctx, resource)
}
