package resync

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/checkpoint"
	"github.com/graphwebhooks/graph-webhooks-go/internal/events"
	"github.com/graphwebhooks/graph-webhooks-go/internal/family"
	"github.com/graphwebhooks/graph-webhooks-go/internal/graph"
	"github.com/graphwebhooks/graph-webhooks-go/internal/message"
)

// walker is how a pass walks one scope's delta for its family: what the delta links select, how a round
// starts and goes on, and how a page becomes events. The Runner owns the rest (passes, checkpoints,
// continuations, retries), the same for every family.
type walker interface {
	// scope is the checkpoint's name: "users", "drives/{drive-id}".
	scope() string
	// deltaSelect is what the scope's delta links are made with; its hash is kept in the checkpoint, and
	// selectSetting names the setting behind it.
	deltaSelect() []string
	selectSetting() string
	// start begins a round: every object, or with latest only a link from now.
	start(ctx context.Context, g Graph, latest bool) (graph.DeltaPage, error)
	// next fetches the page at a nextLink or a stored deltaLink.
	next(ctx context.Context, g Graph, link string) (graph.DeltaPage, error)
	// page turns one page into events; carry is the part of an object that goes on past the page.
	page(ctx context.Context, log *slog.Logger, g Graph, in pageInput) ([]events.Item, *checkpoint.Carry, error)
	// secondLook is how long after an incremental pass that wrote no event one more pass looks again (0:
	// never), for scopes whose delta can lag the notification that started the pass.
	secondLook() time.Duration
}

// pageInput is one page and where it stands in its pass.
type pageInput struct {
	objects []graph.Object
	carry   *checkpoint.Carry // from the page before
	more    bool              // more pages follow
	source  message.Source
	passID  string
	link    string // the page's link, for event ids
	// since is when the changes this pass reports began: the last completed pass of an incremental pass,
	// zero for a full one.
	since time.Time
}

// walkers builds the walker of a scope, per family whose gaps a delta pass recovers.
var walkers = map[family.Name]func(r *Runner, e family.Entry) walker{
	family.Directory.Name: newDirectoryWalker,
	family.Drives.Name:    newDriveWalker,
}

// walkerFor finds the walker of a resync scope ("users", "groups", "drives/{drive-id}").
func (r *Runner) walkerFor(scope string) (walker, error) {
	f, e, ok := family.FamilyOfScope(scope)
	if !ok {
		return nil, fmt.Errorf("resync: unknown collection %q", scope)
	}
	build, ok := walkers[f.Name]
	if !ok {
		return nil, fmt.Errorf("resync: %s are not recovered by a delta pass", f.Name)
	}
	return build(r, e), nil
}
