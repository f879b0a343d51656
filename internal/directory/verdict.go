package directory

import "github.com/graphwebhooks/graph-webhooks-go/internal/graph"

// Verdict is what a read says happened to an object.
type Verdict struct {
	ChangeType  graph.ChangeType
	SoftDeleted bool
	Object      graph.Object // nil for an object deleted for good
}

// Verdict is the one rule turning a read into a change, for notifications and resync alike: found live
// is updated with the object's properties; found in deletedItems is deleted, soft, with what was readable
// there; found nowhere is deleted for good. settled is false for the outcomes that say nothing about the
// object (refused, or to be tried again); what to do then is the caller's to decide, and so is whether a
// Gone is believed yet (an object may still be replicating).
func (rd Read) Verdict() (v Verdict, settled bool) {
	switch rd.Outcome {
	case Found:
		return Verdict{ChangeType: graph.Updated, Object: rd.Object}, true
	case SoftDeleted:
		return Verdict{ChangeType: graph.Deleted, SoftDeleted: true, Object: rd.Object}, true
	case Gone:
		return Verdict{ChangeType: graph.Deleted}, true
	}
	return Verdict{}, false
}

// Refusals counts the reads Graph refused among those asked. Every read refused alike is no bad object
// but a bad setting (the select) or a missing permission: the work must then fail as a whole, so that it
// is kept and retried once the setting is fixed, rather than dropped object by object.
type Refusals struct {
	Asked, Refused int
	First          error // the first refusal's cause
}

// Add counts reads.
func (r *Refusals) Add(reads ...Read) {
	for _, rd := range reads {
		r.Asked++
		if rd.Outcome == Refused {
			r.Refused++
			if r.First == nil {
				r.First = rd.Err
			}
		}
	}
}

// All reports whether every read asked was refused (and at least one was asked).
func (r Refusals) All() bool { return r.Refused > 0 && r.Refused == r.Asked }
