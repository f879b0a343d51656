package graph

import "strings"

// ChangeType is a notification's changeType. For directory objects Graph sends updated (which covers
// creation, update and soft delete) and deleted (gone for good); created is refused on subscription.
type ChangeType string

const (
	Created ChangeType = "created"
	Updated ChangeType = "updated"
	Deleted ChangeType = "deleted"
)

// ParseChangeType reads a changeType without regard to case.
func ParseChangeType(s string) (ChangeType, bool) {
	for _, t := range []ChangeType{Created, Updated, Deleted} {
		if strings.EqualFold(s, string(t)) {
			return t, true
		}
	}
	return "", false
}

// LifecycleEvent is a lifecycle notification's lifecycleEvent.
type LifecycleEvent string

const (
	// ReauthorizationRequired: Graph pauses delivery until the subscription is reauthorized (or renewed).
	ReauthorizationRequired LifecycleEvent = "reauthorizationRequired"
	// SubscriptionRemoved: Graph dropped the subscription; it must be created again.
	SubscriptionRemoved LifecycleEvent = "subscriptionRemoved"
	// Missed: Graph could not deliver some notifications.
	Missed LifecycleEvent = "missed"
)

// ParseLifecycleEvent reads a lifecycleEvent without regard to case.
func ParseLifecycleEvent(s string) (LifecycleEvent, bool) {
	for _, e := range []LifecycleEvent{ReauthorizationRequired, SubscriptionRemoved, Missed} {
		if strings.EqualFold(s, string(e)) {
			return e, true
		}
	}
	return "", false
}
