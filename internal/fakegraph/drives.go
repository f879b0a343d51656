package fakegraph

import (
	"cmp"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Drives (OneDrive for Business and SharePoint document libraries), docs/graph-facts.md §10.1: a
// drive is a tree of items under a root; a subscription to drives/{drive-id}/root hears a tap (changeType
// updated, no item) whenever something in the drive changes, and GET /drives/{drive-id}/root/delta says
// what changed. drives_delta.go serves delta and items, drives_control.go the control API.

// Defaults of the drive options.
const (
	// DefaultDrivePageSize is delta's page size without $top. UNCONFIRMED: Graph's delta page does not
	// document it; a OneDrive maintainer gives 200 as the default page (OneDrive/onedrive-api-docs issue 319).
	DefaultDrivePageSize = 200
	// DefaultDriveMaxTop is the largest $top delta honours (larger values are lowered to it, choice).
	// UNCONFIRMED: undocumented on Graph's delta page; the same maintainer comment gives 1000 items per page.
	DefaultDriveMaxTop = 1000
	// DefaultDriveMaxSubscriptions is the per-drive subscription limit: UNCONFIRMED guidance (OneDrive issue 1920).
	DefaultDriveMaxSubscriptions = 100
	// MaxDriveExpiryMinutes is the longest lifetime of a drive subscription (docs/graph-facts.md §10.1).
	MaxDriveExpiryMinutes = 42300
)

// driveRoles are the application roles that read drives: Files.Read.All, or Sites.Read.All (and the
// ReadWrite ones above them).
var driveRoles = []string{"Files.Read.All", "Files.ReadWrite.All", "Sites.Read.All", "Sites.ReadWrite.All"}

var (
	// driveIDRE: "b!" and base64url characters for business drives; a personal drive id is 16 hex digits.
	// Graph documents neither grammar; these are the shapes Graph returns (docs/graph-facts.md §10.1).
	driveIDRE = regexp.MustCompile(`^(b![A-Za-z0-9_-]{1,200}|[0-9A-Fa-f]{16})$`)
	// driveItemIDRE: business item ids are upper-case letters and digits (e.g. 01BYE5RZ6QN3ZWBTUFOFD3GSPGOHDJD36K);
	// personal ones look like D4648F06C91D9D3D!54927.
	driveItemIDRE = regexp.MustCompile(`^([A-Z0-9]{1,100}|[0-9A-F]{16}![0-9]{1,12})$`)
)

// ValidDriveID and ValidDriveItemID report whether an id has the shape of a drive id or a drive item id.
func ValidDriveID(id string) bool     { return driveIDRE.MatchString(id) }
func ValidDriveItemID(id string) bool { return driveItemIDRE.MatchString(id) }

func init() {
	registerFamily(family{
		name: "drives",
		rules: []subscriptionRule{{
			pattern:            "drives/{drive-id}/root",
			match:              matchDriveRoot,
			changeTypes:        []string{"updated"},
			maxLifetimeMinutes: MaxDriveExpiryMinutes,
			rich:               richNever,
			// Graph's wording for drives (docs/graph-facts.md §10.1).
			richRefusal: "File Services workload is not enabled for rich notifications.",
			roles:       func(resourceRef) []string { return driveRoles },
			quotas: []subscriptionQuota{{
				scope:   func(ref resourceRef) string { return ref.ID(0) },
				allApps: true, // a limit on the drive, whoever subscribes (UNCONFIRMED)
				limit:   func(o *Options) int { return o.DriveMaxSubscriptions },
				message: "Operation: Create; Exception: [Status Code: Forbidden; Reason: The number of subscriptions for this drive has reached its limit of %d.]",
			}},
			check: func(s *Server, _ *subRequest, ref resourceRef) string {
				s.mu.Lock()
				defer s.mu.Unlock()
				if s.drivesLocked().drives[ref.ID(0)] == nil {
					// Choice: Graph's answer for a subscription to a missing drive is undocumented.
					return "Invalid 'resource' attribute: drive '" + ref.ID(0) + "' does not exist."
				}
				return ""
			},
		}},
		routes:        (*Server).driveRoutes,
		controlRoutes: (*Server).driveControlRoutes,
		pathRoles: func(path string) ([]string, bool) {
			if strings.HasPrefix(path, "/v1.0/drives/") {
				return driveRoles, true
			}
			return nil, false
		},
		sharedRoles:  driveRoles,
		defaultRoles: []string{"Files.Read.All"},
		newState: func(s *Server) any {
			o := &s.opts
			if o.DrivePageSize <= 0 {
				o.DrivePageSize = DefaultDrivePageSize
			}
			if o.DriveMaxTop <= 0 {
				o.DriveMaxTop = DefaultDriveMaxTop
			}
			if o.DriveMaxSubscriptions == 0 {
				o.DriveMaxSubscriptions = DefaultDriveMaxSubscriptions
			}
			return &driveStore{drives: map[string]*driveRec{}, lag: o.DriveDeltaLag, lagCalls: o.DriveDeltaLagCalls}
		},
		ready: func(s *Server) {
			for _, d := range s.opts.Drives {
				if _, err := s.AddDrive(d); err != nil {
					panic("fakegraph: Options.Drives: " + err.Error())
				}
			}
		},
		clearFaults: func(s *Server) {
			d := s.drivesLocked()
			d.lag, d.lagCalls = 0, 0
		},
	})
}

// matchDriveRoot accepts drives/{drive-id}/root ("drives" and "root" in any case, the id as Graph spells it).
func matchDriveRoot(segs []string, query string) (resourceRef, bool) {
	if len(segs) != 3 || query != "" || !strings.EqualFold(segs[0], "drives") || !strings.EqualFold(segs[2], "root") || !ValidDriveID(segs[1]) {
		return resourceRef{}, false
	}
	return resourceRef{Coll: "drives", IDs: []string{segs[1]}}, true
}

// ---- state ----

type driveStore struct {
	drives   map[string]*driveRec // key: the drive id, exact (drive ids are case-sensitive base64url)
	order    []string
	seq      int64         // change sequence over every drive
	lag      time.Duration // a change is hidden from delta for this long (Clock) after its tap
	lagCalls int           // … and until this many delta calls on its drive have passed
}

type driveRec struct {
	id, driveType, name string
	itemPrefix          string // the first 8 characters every item id of the drive shares, as in Graph
	rootID              string
	items               map[string]*itemRec
	log                 []driveChange
	gen                 int64 // delta tokens of an older generation answer 410
	calls               int   // delta calls so far (for the lag in calls)
}

// driveChange is one entry of a drive's change log: delta lists the items with an entry in its range.
type driveChange struct {
	seq       int64
	itemID    string
	parent    bool      // the item is there only as an ancestor of a changed item
	visibleAt time.Time // Clock time from which delta sees it
	afterCall int       // delta sees it from the delta call numbered above this
}

type itemRec struct {
	id, name, parentID, mimeType string
	folder                       bool
	size                         int64
	created, modified            time.Time
	createdSeq, deletedSeq       int64 // change sequence of its creation and deletion (0: not deleted)
	etagGUID                     string
	version, contentVersion      int // eTag and cTag versions
}

func (s *Server) drivesLocked() *driveStore { return s.familyState("drives").(*driveStore) }

// ---- Go API ----

// Drive is a drive as the Go API adds it.
type Drive struct {
	ID        string // default: a new business drive id "b!…"
	DriveType string // default "business" ("documentLibrary" for a SharePoint library, "personal")
	Name      string // default "OneDrive"
}

// DriveItem is a drive item as the Go API adds and lists it.
type DriveItem struct {
	ID       string `json:"id,omitempty"`       // default: a new id in the drive's shape
	ParentID string `json:"parentId,omitempty"` // default: the root
	Name     string `json:"name"`
	Folder   bool   `json:"folder,omitempty"`
	Size     int64  `json:"size,omitempty"`     // files only
	MimeType string `json:"mimeType,omitempty"` // files only; default application/octet-stream
	// Read back only.
	ETag                 string    `json:"eTag,omitempty"`
	CTag                 string    `json:"cTag,omitempty"`
	LastModifiedDateTime time.Time `json:"lastModifiedDateTime,omitzero"`
	Deleted              bool      `json:"deleted,omitempty"`
	Root                 bool      `json:"root,omitempty"`
}

// ErrDriveNotFound and ErrDriveItemNotFound answer the Go API for an unknown drive or item.
var (
	ErrDriveNotFound     = errors.New("fakegraph: no such drive")
	ErrDriveItemNotFound = errors.New("fakegraph: no such drive item")
	errDriveConflict     = errors.New("fakegraph: an item with this name already exists in the folder")
	errDriveBadMove      = errors.New("fakegraph: an item cannot move into itself or below itself, nor can the root move")
)

// AddDrive adds an empty drive (its root folder only) and returns its id. No notification is sent.
func (s *Server) AddDrive(d Drive) (string, error) {
	if d.ID == "" {
		d.ID = newDriveID()
	}
	if !ValidDriveID(d.ID) {
		return "", fmt.Errorf("fakegraph: %q is not a drive id", d.ID)
	}
	if d.DriveType == "" {
		d.DriveType = "business"
	}
	if d.Name == "" {
		d.Name = "OneDrive"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.drivesLocked()
	if st.drives[d.ID] != nil {
		return "", fmt.Errorf("fakegraph: drive %s exists", d.ID)
	}
	dr := &driveRec{id: d.ID, driveType: d.DriveType, name: d.Name, itemPrefix: newItemPrefix(), items: map[string]*itemRec{}}
	now := s.now()
	st.seq++
	root := &itemRec{id: dr.newItemID(), name: "root", folder: true, created: now, modified: now, createdSeq: st.seq, etagGUID: newETagGUID(), version: 1, contentVersion: 1}
	dr.rootID = root.id
	dr.items[root.id] = root
	dr.log = append(dr.log, driveChange{seq: st.seq, itemID: root.id, visibleAt: now})
	st.drives[d.ID] = dr
	st.order = append(st.order, d.ID)
	return d.ID, nil
}

// DriveRootID returns the id of a drive's root item ("" for an unknown drive).
func (s *Server) DriveRootID(driveID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if dr := s.drivesLocked().drives[driveID]; dr != nil {
		return dr.rootID
	}
	return ""
}

// Drives returns the ids of every drive, in the order they were added.
func (s *Server) Drives() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.drivesLocked().order)
}

// AddDriveItem creates a file or folder and taps the drive's subscribers.
func (s *Server) AddDriveItem(driveID string, it DriveItem) (string, error) {
	ids, err := s.addDriveItems(driveID, []DriveItem{it}, 1)
	if err != nil {
		return "", err
	}
	return ids[0], nil
}

// SeedDriveFiles creates n files named prefix-00001.txt… in parentID ("": the root) with one tap per
// subscriber in all when notify (a bulk upload, choice), none otherwise. The files are changes delta reports.
func (s *Server) SeedDriveFiles(driveID, parentID, prefix string, n int, notify bool) ([]string, error) {
	if prefix == "" {
		prefix = "file"
	}
	its := make([]DriveItem, n)
	for i := range its {
		its[i] = DriveItem{ParentID: parentID, Name: fmt.Sprintf("%s-%05d.txt", prefix, i+1), Size: int64(100 + i), MimeType: "text/plain"}
	}
	taps := 0
	if notify {
		taps = 1
	}
	return s.addDriveItems(driveID, its, taps)
}

func (s *Server) addDriveItems(driveID string, its []DriveItem, taps int) ([]string, error) {
	s.mu.Lock()
	dr, err := s.driveLocked(driveID)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	var ids []string
	for _, it := range its {
		var id string
		if id, err = s.addItemLocked(dr, it); err != nil {
			break
		}
		ids = append(ids, id)
	}
	var ns []pendingNotification
	if len(ids) > 0 { // the items added before a failure are changes too
		ns = s.driveTapsLocked(dr, taps)
	}
	s.mu.Unlock()
	s.enqueueAll(ns)
	return ids, err
}

func (s *Server) addItemLocked(dr *driveRec, it DriveItem) (string, error) {
	if it.ParentID == "" {
		it.ParentID = dr.rootID
	}
	parent := dr.live(it.ParentID)
	if parent == nil || !parent.folder {
		return "", fmt.Errorf("%w: parent %s", ErrDriveItemNotFound, it.ParentID)
	}
	if it.ID == "" {
		it.ID = dr.newItemID()
	}
	if !ValidDriveItemID(it.ID) || dr.items[it.ID] != nil {
		return "", fmt.Errorf("fakegraph: item id %q is malformed or taken", it.ID)
	}
	if it.Name == "" || strings.ContainsAny(it.Name, `/\:*?"<>|`) {
		return "", fmt.Errorf("fakegraph: bad item name %q", it.Name)
	}
	if dr.childNamed(it.ParentID, it.Name) != nil {
		return "", errDriveConflict
	}
	if it.MimeType == "" && !it.Folder {
		it.MimeType = "application/octet-stream"
	}
	if it.Folder {
		it.Size, it.MimeType = 0, ""
	}
	now := s.now()
	rec := &itemRec{id: it.ID, name: it.Name, parentID: it.ParentID, folder: it.Folder, size: it.Size, mimeType: it.MimeType,
		created: now, modified: now, etagGUID: newETagGUID(), version: 1, contentVersion: 1}
	dr.items[it.ID] = rec
	s.logChangeLocked(dr, rec.id, rec.parentID)
	return it.ID, nil
}

// UpdateDriveItem changes a file's content (its size): new eTag and cTag, lastModifiedDateTime now. Taps.
func (s *Server) UpdateDriveItem(driveID, itemID string, size int64) error {
	return s.EditDriveFiles(driveID, []string{itemID}, size, 1)
}

// EditDriveFiles edits the content of several files (size < 0 keeps each size and adds 1), each
// edit tapping every subscriber taps times (0: silently).
func (s *Server) EditDriveFiles(driveID string, itemIDs []string, size int64, taps int) error {
	s.mu.Lock()
	dr, err := s.driveLocked(driveID)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	var ns []pendingNotification
	for _, id := range itemIDs {
		it := dr.live(id)
		if it == nil || it.folder {
			s.mu.Unlock()
			s.enqueueAll(ns)
			return fmt.Errorf("%w: file %s", ErrDriveItemNotFound, id)
		}
		if size < 0 {
			it.size++
		} else {
			it.size = size
		}
		it.version++
		it.contentVersion++
		it.modified = s.now()
		s.logChangeLocked(dr, it.id, it.parentID)
		ns = append(ns, s.driveTapsLocked(dr, taps)...)
	}
	s.mu.Unlock()
	s.enqueueAll(ns)
	return nil
}

// RenameDriveItem renames a file or folder (new eTag, same cTag). Taps. Descendants of a renamed
// folder do not change (Graph's delta does not list them either).
func (s *Server) RenameDriveItem(driveID, itemID, name string) error {
	return s.mutateItem(driveID, itemID, func(dr *driveRec, it *itemRec) error {
		if name == "" || strings.ContainsAny(name, `/\:*?"<>|`) {
			return fmt.Errorf("fakegraph: bad item name %q", name)
		}
		if c := dr.childNamed(it.parentID, name); c != nil && c != it {
			return errDriveConflict
		}
		it.name = name
		return nil
	})
}

// MoveDriveItem moves a file or folder under another folder (new eTag). Taps; delta lists the item and
// the ancestors of both its old and its new place.
func (s *Server) MoveDriveItem(driveID, itemID, newParentID string) error {
	var oldParent string
	return s.mutateItem(driveID, itemID, func(dr *driveRec, it *itemRec) error {
		np := dr.live(newParentID)
		if np == nil || !np.folder {
			return fmt.Errorf("%w: folder %s", ErrDriveItemNotFound, newParentID)
		}
		for p := np; p != nil; p = dr.items[p.parentID] {
			if p == it {
				return errDriveBadMove
			}
		}
		if dr.childNamed(newParentID, it.name) != nil {
			return errDriveConflict
		}
		oldParent, it.parentID = it.parentID, newParentID
		return nil
	}, func(dr *driveRec) { s.logAncestorsLocked(dr, oldParent) })
}

func (s *Server) mutateItem(driveID, itemID string, f func(*driveRec, *itemRec) error, after ...func(*driveRec)) error {
	s.mu.Lock()
	dr, err := s.driveLocked(driveID)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	it := dr.live(itemID)
	if it == nil || it.id == dr.rootID {
		s.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrDriveItemNotFound, itemID)
	}
	if err := f(dr, it); err != nil {
		s.mu.Unlock()
		return err
	}
	it.version++
	it.modified = s.now()
	for _, a := range after {
		a(dr)
	}
	s.logChangeLocked(dr, it.id, it.parentID)
	ns := s.driveTapsLocked(dr, 1)
	s.mu.Unlock()
	s.enqueueAll(ns)
	return nil
}

// DeleteDriveItem deletes a file, or a folder with everything below it (each a deleted item in delta,
// choice: Graph's listing of a deleted folder's descendants is undocumented). Taps once.
func (s *Server) DeleteDriveItem(driveID, itemID string) error {
	s.mu.Lock()
	dr, err := s.driveLocked(driveID)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	it := dr.live(itemID)
	if it == nil || it.id == dr.rootID {
		s.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrDriveItemNotFound, itemID)
	}
	st := s.drivesLocked()
	now := s.now()
	// Descendants first, then the item, so delta lists the deepest deletions first (choice).
	var del func(x *itemRec)
	del = func(x *itemRec) {
		for _, c := range dr.children(x.id) {
			del(c)
		}
		x.modified = now
		s.logChangeLocked(dr, x.id, "")
		x.deletedSeq = st.seq
	}
	del(it)
	s.logAncestorsLocked(dr, it.parentID)
	ns := s.driveTapsLocked(dr, 1)
	s.mu.Unlock()
	s.enqueueAll(ns)
	return nil
}

// TapDrive sends n taps to every subscriber of the drive without changing anything (Graph sends
// several notifications for one change, docs/graph-facts.md §2.5).
func (s *Server) TapDrive(driveID string, n int) error {
	s.mu.Lock()
	dr, err := s.driveLocked(driveID)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	ns := s.driveTapsLocked(dr, n)
	s.mu.Unlock()
	s.enqueueAll(ns)
	return nil
}

// ExpireDriveDeltaTokens makes every delta token of the drive answer 410 resyncRequired.
func (s *Server) ExpireDriveDeltaTokens(driveID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	dr, err := s.driveLocked(driveID)
	if err != nil {
		return err
	}
	dr.gen++
	return nil
}

// SetDriveDeltaLag hides each change from delta, from now on, until d has passed on Clock after its tap
// and calls delta calls on its drive have been answered without it (docs/graph-facts.md §10.1: delta
// can lag the notification). Zero for both: changes are visible at once. ClearFaults resets it.
func (s *Server) SetDriveDeltaLag(d time.Duration, calls int) {
	s.mu.Lock()
	st := s.drivesLocked()
	st.lag, st.lagCalls = d, calls
	s.mu.Unlock()
}

// DriveItems returns a drive's live items (the root first, then by creation), or ErrDriveNotFound.
func (s *Server) DriveItems(driveID string) ([]DriveItem, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	dr, err := s.driveLocked(driveID)
	if err != nil {
		return nil, err
	}
	var out []DriveItem
	for _, it := range dr.sorted() {
		if it.deletedSeq == 0 {
			out = append(out, dr.export(it))
		}
	}
	return out, nil
}

// GetDriveItem returns one item, deleted or not.
func (s *Server) GetDriveItem(driveID, itemID string) (DriveItem, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	dr, err := s.driveLocked(driveID)
	if err != nil {
		return DriveItem{}, err
	}
	it := dr.items[itemID]
	if it == nil {
		return DriveItem{}, ErrDriveItemNotFound
	}
	return dr.export(it), nil
}

// ---- internals ----

func (s *Server) driveLocked(id string) (*driveRec, error) {
	dr := s.drivesLocked().drives[id]
	if dr == nil {
		return nil, fmt.Errorf("%w: %s", ErrDriveNotFound, id)
	}
	return dr, nil
}

// logChangeLocked records a change of itemID and, as Graph lists them too, of every ancestor from
// parentID up to the root (marked parent, so Options.DriveNoParents or deltaExcludeParent can drop them).
// The ancestors come first, so delta lists parents before their children.
func (s *Server) logChangeLocked(dr *driveRec, itemID, parentID string) {
	s.logAncestorsLocked(dr, parentID)
	st := s.drivesLocked()
	st.seq++
	dr.log = append(dr.log, s.newChangeLocked(dr, itemID, false))
	if it := dr.items[itemID]; it != nil && it.createdSeq == 0 {
		it.createdSeq = st.seq
	}
}

func (s *Server) logAncestorsLocked(dr *driveRec, parentID string) {
	var chain []string
	for p := dr.items[parentID]; p != nil; p = dr.items[p.parentID] {
		chain = append(chain, p.id)
		if p.id == dr.rootID {
			break
		}
	}
	slices.Reverse(chain)
	for _, id := range chain {
		s.drivesLocked().seq++
		dr.log = append(dr.log, s.newChangeLocked(dr, id, true))
	}
}

func (s *Server) newChangeLocked(dr *driveRec, itemID string, parent bool) driveChange {
	st := s.drivesLocked()
	return driveChange{seq: st.seq, itemID: itemID, parent: parent, visibleAt: s.now().Add(st.lag), afterCall: dr.calls + st.lagCalls}
}

// driveTapsLocked builds n taps (each 1 + DuplicateNotifications copies) for every live subscription
// to the drive's root: changeType updated, resource as subscribed, no resourceData unless
// Options.DriveTapItemID (docs/graph-facts.md §10.1).
func (s *Server) driveTapsLocked(dr *driveRec, n int) []pendingNotification {
	var out []pendingNotification
	subs := s.subscribersLocked("drives", "updated", func(ref resourceRef) bool { return ref.ID(0) == dr.id })
	for range n {
		for _, sub := range subs {
			out = append(out, s.changeNotificationsLocked(sub, nil, func() map[string]any {
				n := map[string]any{"changeType": "updated", "resource": sub.Resource}
				if s.opts.DriveTapItemID {
					// UNCONFIRMED shape: payloads seen in the wild carry an item id that does not name the
					// changed item; the double names the drive's root so a client that trusts it learns nothing.
					n["resourceData"] = map[string]any{"id": dr.rootID}
				}
				return n
			})...)
		}
	}
	return out
}

func (dr *driveRec) live(id string) *itemRec {
	if it := dr.items[id]; it != nil && it.deletedSeq == 0 {
		return it
	}
	return nil
}

func (dr *driveRec) childNamed(parentID, name string) *itemRec {
	for _, it := range dr.items {
		if it.deletedSeq == 0 && it.parentID == parentID && strings.EqualFold(it.name, name) {
			return it
		}
	}
	return nil
}

func (dr *driveRec) children(parentID string) []*itemRec {
	var out []*itemRec
	for _, it := range dr.sorted() {
		if it.deletedSeq == 0 && it.parentID == parentID && it.id != dr.rootID {
			out = append(out, it)
		}
	}
	return out
}

// sorted is every item (deleted ones too) by creation.
func (dr *driveRec) sorted() []*itemRec {
	out := make([]*itemRec, 0, len(dr.items))
	for _, it := range dr.items {
		out = append(out, it)
	}
	slices.SortFunc(out, func(a, b *itemRec) int { return cmp.Compare(a.createdSeq, b.createdSeq) })
	return out
}

// folderSize is the total size of the live files below a folder (Graph's folder size).
func (dr *driveRec) folderSize(id string) (size int64, children int) {
	for _, c := range dr.children(id) {
		children++
		if c.folder {
			n, _ := dr.folderSize(c.id)
			size += n
		} else {
			size += c.size
		}
	}
	return size, children
}

func (dr *driveRec) export(it *itemRec) DriveItem {
	size := it.size
	if it.folder {
		size, _ = dr.folderSize(it.id)
	}
	return DriveItem{ID: it.id, ParentID: it.parentID, Name: it.name, Folder: it.folder, Size: size, MimeType: it.mimeType,
		ETag: it.eTag(), CTag: it.cTag(), LastModifiedDateTime: it.modified, Deleted: it.deletedSeq != 0, Root: it.id == dr.rootID}
}

// eTag and cTag have SharePoint's shapes: "{GUID},version" and "c:{GUID},version" (quotes included).
func (it *itemRec) eTag() string { return fmt.Sprintf(`"{%s},%d"`, it.etagGUID, it.version) }
func (it *itemRec) cTag() string { return fmt.Sprintf(`"c:{%s},%d"`, it.etagGUID, it.contentVersion) }

// newDriveID is "b!" and 64 base64url characters, the shape of a business drive id.
func newDriveID() string {
	var b [48]byte
	_, _ = rand.Read(b[:])
	return "b!" + base64.RawURLEncoding.EncodeToString(b[:])
}

const base32Upper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

func randomUpper(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = base32Upper[int(b[i])%len(base32Upper)]
	}
	return string(b)
}

// newItemPrefix is "01" and 6 upper-case characters: a drive's items share their first 8 characters.
func newItemPrefix() string { return "01" + randomUpper(6) }

// newItemID is a 34-character business item id (upper-case letters and digits).
func (dr *driveRec) newItemID() string {
	for {
		id := dr.itemPrefix + randomUpper(26)
		if dr.items[id] == nil {
			return id
		}
	}
}

func newETagGUID() string { return strings.ToUpper(newGUID()) }
