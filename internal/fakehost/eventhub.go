package fakehost

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
	"time"
)

// This file models the eventHubTrigger (docs/host-protocol.md §3.6): an in-memory hub per name with
// partitions, one consumer per function that reads each partition in order, batches of up to
// maxEventBatchSize events, the payload the host builds for a custom handler, and the checkpoint that moves
// after every invocation whatever its result, unless function.json's retry policy holds it.

// DefaultEventHubPartitions is the partition count of a hub when Options.EventHubPartitions is zero.
const DefaultEventHubPartitions = 2

// EventHubEncoding selects how the double encodes an eventHubTrigger's values. The host's wire shape for
// event batches was read from its source and never observed on a running host (docs/host-protocol.md §3.6), so tests can run a
// handler against each shape a reading of that source allows.
type EventHubEncoding string

const (
	// EventHubEncodingHost is docs/host-protocol.md §3.6 as read: with cardinality many, Data.<name> is a JSON string whose
	// content is the JSON array of event bodies (string[] serialised by JsonConvert), and each *Array
	// metadata value is a JSON string holding an array. The default.
	EventHubEncodingHost EventHubEncoding = "host"
	// EventHubEncodingArray sends Data.<name> and the *Array metadata as plain JSON arrays: the shape if
	// the host passed arrays through as JSON tokens instead of serialising them to strings [inferred].
	EventHubEncodingArray EventHubEncoding = "array"
	// EventHubEncodingQuotedElements is EventHubEncodingHost with every element JSON-quoted once more
	// (each body encoded twice, as the queue trigger's single value is) [inferred].
	EventHubEncodingQuotedElements EventHubEncoding = "quoted-elements"
)

// eventHubOptions is host.json's extensions.eventHubs.
type eventHubOptions struct {
	maxEventBatchSize int
}

type eventHubsJSON struct {
	MaxEventBatchSize        *int   `json:"maxEventBatchSize"`
	MinEventBatchSize        *int   `json:"minEventBatchSize"`
	MaxWaitTime              string `json:"maxWaitTime"`
	BatchCheckpointFrequency *int   `json:"batchCheckpointFrequency"`
	PrefetchCount            *int   `json:"prefetchCount"`
	InitialOffsetOptions     struct {
		Type string `json:"type"`
	} `json:"initialOffsetOptions"`
}

// options validates the section. minEventBatchSize, maxWaitTime, prefetchCount and
// batchCheckpointFrequency are checked but not modelled: events are handed over as soon as they arrive, and
// the checkpoint moves after every batch (batchCheckpointFrequency 1, the default).
func (j eventHubsJSON) options() (eventHubOptions, error) {
	o := eventHubOptions{maxEventBatchSize: 100} // extension v6 default (docs/host-protocol.md §3.6)
	if j.MaxEventBatchSize != nil {
		if *j.MaxEventBatchSize < 1 {
			return o, fmt.Errorf("maxEventBatchSize %d: must be at least 1", *j.MaxEventBatchSize)
		}
		o.maxEventBatchSize = *j.MaxEventBatchSize
	}
	if j.MinEventBatchSize != nil && (*j.MinEventBatchSize < 1 || *j.MinEventBatchSize > o.maxEventBatchSize) {
		return o, fmt.Errorf("minEventBatchSize %d: must be 1..maxEventBatchSize", *j.MinEventBatchSize)
	}
	if j.MaxWaitTime != "" {
		if d, err := parseTimeSpan(j.MaxWaitTime); err != nil || d < 0 {
			return o, fmt.Errorf("maxWaitTime %q: invalid TimeSpan", j.MaxWaitTime)
		}
	}
	if j.BatchCheckpointFrequency != nil && *j.BatchCheckpointFrequency < 1 {
		return o, fmt.Errorf("batchCheckpointFrequency %d: must be at least 1", *j.BatchCheckpointFrequency)
	}
	if j.PrefetchCount != nil && *j.PrefetchCount < 0 {
		return o, fmt.Errorf("prefetchCount %d: must not be negative", *j.PrefetchCount)
	}
	switch strings.ToLower(j.InitialOffsetOptions.Type) {
	case "", "fromstart", "fromend":
		// Equivalent here: a hub of the double is empty when its consumers start.
	default:
		// fromEnqueuedTime needs a clock the hub does not keep; the double refuses it rather than guess.
		return o, fmt.Errorf("initialOffsetOptions.type %q: the double models fromStart and fromEnd", j.InitialOffsetOptions.Type)
	}
	return o, nil
}

// eventHubTrigger is a function's eventHubTrigger binding, resolved.
type eventHubTrigger struct {
	hub           string // eventHubName, %SETTING% resolved
	consumerGroup string
	namespace     string // from <connection>__fullyQualifiedNamespace, or the connection string's Endpoint
	many          bool
	dataType      string // "", "string" or "binary"
}

func (h *Host) buildEventHubTrigger(name string, b *Binding) (*eventHubTrigger, error) {
	if b.EventHubName == "" {
		return nil, fmt.Errorf("function %s: eventHubTrigger has no eventHubName", name)
	}
	eh := &eventHubTrigger{hub: b.EventHubName, consumerGroup: b.ConsumerGroup, dataType: strings.ToLower(b.DataType)}
	if eh.consumerGroup == "" {
		eh.consumerGroup = "$Default"
	}
	switch strings.ToLower(b.Cardinality) {
	case "", "one":
	case "many":
		eh.many = true
	default:
		return nil, fmt.Errorf("function %s: cardinality %q: want one or many", name, b.Cardinality)
	}
	switch eh.dataType {
	case "", "string", "binary":
	default:
		return nil, fmt.Errorf("function %s: dataType %q: want string or binary", name, b.DataType)
	}
	// The extension resolves the connection as <name> (a connection string) or <name>__fullyQualifiedNamespace
	// (identity); a function with neither does not start.
	conn := b.Connection
	if conn == "" {
		return nil, fmt.Errorf("function %s: eventHubTrigger has no connection", name)
	}
	switch {
	case h.env[conn+"__fullyQualifiedNamespace"] != "":
		eh.namespace = h.env[conn+"__fullyQualifiedNamespace"]
	case h.env[conn] != "":
		eh.namespace = connectionStringNamespace(h.env[conn])
	default:
		return nil, fmt.Errorf("function %s: connection %s: neither %s nor %s__fullyQualifiedNamespace is set", name, conn, conn, conn)
	}
	return eh, nil
}

// connectionStringNamespace takes the host of Endpoint=sb://<ns>/ from an Event Hubs connection string.
func connectionStringNamespace(cs string) string {
	for _, part := range strings.Split(cs, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		if strings.EqualFold(k, "Endpoint") {
			v = strings.TrimPrefix(strings.TrimPrefix(v, "sb://"), "https://")
			return strings.TrimRight(v, "/")
		}
	}
	return ""
}

// EventData is one event sent to a hub.
type EventData struct {
	Body []byte
	// PartitionKey sends events with the same key to the same partition; empty: round robin.
	PartitionKey string
	// Properties are the event's application properties.
	Properties map[string]any
}

// EventPosition says where a sent event was stored.
type EventPosition struct {
	Partition      int
	SequenceNumber int64
}

type storedEvent struct {
	EventData
	seq      int64
	offset   int64
	enqueued time.Time
}

type partition struct {
	events     []storedEvent
	nextOffset int64
}

// eventHub is one hub: partitions of events, kept for the life of the host (retention is not modelled).
type eventHub struct {
	name       string
	mu         sync.Mutex
	partitions []partition
	rr         int
	changed    chan struct{} // closed and replaced when events arrive
}

// hub returns the named hub, creating it with Options.EventHubPartitions partitions on first use. Hub names
// are case-insensitive, as Event Hubs entity names are.
func (h *Host) hub(name string) *eventHub {
	key := strings.ToLower(name)
	h.ehmu.Lock()
	defer h.ehmu.Unlock()
	if h.hubs == nil {
		h.hubs = map[string]*eventHub{}
	}
	hb, ok := h.hubs[key]
	if !ok {
		n := h.opts.EventHubPartitions
		if n <= 0 {
			n = DefaultEventHubPartitions
		}
		hb = &eventHub{name: name, partitions: make([]partition, n), changed: make(chan struct{})}
		h.hubs[key] = hb
	}
	return hb
}

// SendEvents appends events to the named hub (created on first use, whether or not a function listens to
// it) and reports where each went. Events with a partition key go to the partition its hash picks; the
// others go round robin.
func (h *Host) SendEvents(hub string, events ...EventData) []EventPosition {
	hb := h.hub(hub)
	now := h.now()
	hb.mu.Lock()
	out := make([]EventPosition, 0, len(events))
	for _, e := range events {
		var p int
		if e.PartitionKey != "" {
			f := fnv.New32a()
			f.Write([]byte(e.PartitionKey))
			p = int(f.Sum32() % uint32(len(hb.partitions)))
		} else {
			p = hb.rr % len(hb.partitions)
			hb.rr++
		}
		part := &hb.partitions[p]
		se := storedEvent{EventData: e, seq: int64(len(part.events)), offset: part.nextOffset, enqueued: now}
		se.Body = append([]byte(nil), e.Body...)
		part.nextOffset += int64(len(e.Body)) + 64 // offsets are byte positions in the partition's log
		part.events = append(part.events, se)
		out = append(out, EventPosition{Partition: p, SequenceNumber: se.seq})
	}
	close(hb.changed)
	hb.changed = make(chan struct{})
	hb.mu.Unlock()
	h.bump()
	return out
}

// PartitionCount is the number of partitions of the named hub (creating it).
func (h *Host) PartitionCount(hub string) int {
	hb := h.hub(hub)
	hb.mu.Lock()
	defer hb.mu.Unlock()
	return len(hb.partitions)
}

// read returns up to max events of partition p from sequence number from on, or a channel that is closed
// when more arrive.
func (hb *eventHub) read(p int, from int64, max int) ([]storedEvent, <-chan struct{}) {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	evs := hb.partitions[p].events
	if from < int64(len(evs)) {
		end := min(int64(len(evs)), from+int64(max))
		return evs[from:end], nil
	}
	return nil, hb.changed
}

// ehConsumer reads one hub for one function: a reader per partition and the checkpoints.
type ehConsumer struct {
	h  *Host
	fn *function
	hb *eventHub

	mu          sync.Mutex
	checkpoints []int64 // per partition: sequence number of the last event of the last finished batch; -1 none
}

// Checkpoint returns function's checkpoint on a partition of its hub: the sequence number of the last event
// of the last batch the host finished with (successfully or not), -1 before any. ok is false when the
// function has no running eventHubTrigger (absent or disabled) or the partition does not exist.
func (h *Host) Checkpoint(function string, partition int) (seq int64, ok bool) {
	c := h.consumers[function]
	if c == nil {
		return 0, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if partition < 0 || partition >= len(c.checkpoints) {
		return 0, false
	}
	return c.checkpoints[partition], true
}

// Checkpoints returns function's checkpoint on every partition (nil when it has no running eventHubTrigger).
func (h *Host) Checkpoints(function string) []int64 {
	c := h.consumers[function]
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int64(nil), c.checkpoints...)
}

// WaitFor waits until cond holds, re-checking it whenever an event is sent, an invocation finishes or a
// checkpoint moves (and at least every 100 ms, for conditions on anything else), or until ctx ends.
func (h *Host) WaitFor(ctx context.Context, cond func() bool) error {
	for {
		h.bmu.Lock()
		ch := h.changed
		h.bmu.Unlock()
		if cond() {
			return nil
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("fakehost: condition not met: %w", context.Cause(ctx))
		}
		t.Stop()
	}
}

// bump wakes WaitFor.
func (h *Host) bump() {
	h.bmu.Lock()
	defer h.bmu.Unlock()
	if h.changed != nil {
		close(h.changed)
	}
	h.changed = make(chan struct{})
}

func (h *Host) newEventHubConsumer(fn *function) *ehConsumer {
	hb := h.hub(fn.eventHub.hub)
	n := len(hb.partitions)
	c := &ehConsumer{h: h, fn: fn, hb: hb, checkpoints: make([]int64, n)}
	for p := range c.checkpoints {
		c.checkpoints[p] = -1
	}
	return c
}

// run reads every partition until ctx ends: one reader per partition, each handing over one batch at a time,
// in order, as the extension's partition processors do.
func (c *ehConsumer) run(ctx context.Context) {
	var wg sync.WaitGroup
	for p := range c.checkpoints {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.readPartition(ctx, p)
		}()
	}
	wg.Wait()
}

func (c *ehConsumer) readPartition(ctx context.Context, p int) {
	for ctx.Err() == nil {
		c.mu.Lock()
		from := c.checkpoints[p] + 1
		c.mu.Unlock()
		batch, more := c.hb.read(p, from, c.h.cfg.eventHubs.maxEventBatchSize)
		if len(batch) == 0 {
			select {
			case <-more:
			case <-ctx.Done():
				return
			}
			continue
		}
		if !c.processBatch(ctx, p, batch) {
			return // the host is stopping: the checkpoint stays, so the batch is read again next time
		}
		c.mu.Lock()
		c.checkpoints[p] = batch[len(batch)-1].seq
		c.mu.Unlock()
		c.h.bump()
	}
}

// processBatch invokes the function with one batch, retrying it as function.json's retry policy says. The
// result does not matter to the checkpoint (the extension checkpoints after the invocation either way);
// it returns false only when the host stopped before the batch was done.
func (c *ehConsumer) processBatch(ctx context.Context, p int, batch []storedEvent) bool {
	fn := c.fn
	data, meta := c.payload(p, batch)
	var err error
	for attempt := 0; ; attempt++ {
		_, err = c.h.invoke(ctx, fn, "eventhub", data, meta, retryContext(fn, attempt, err))
		if ctx.Err() != nil {
			return false
		}
		if err == nil || fn.retry == nil || (fn.retry.MaxRetryCount >= 0 && attempt >= fn.retry.MaxRetryCount) {
			break
		}
		delay := fn.retry.delayBefore(attempt + 1)
		if c.h.opts.RetryDelay != nil {
			delay = c.h.opts.RetryDelay(attempt+1, delay)
		}
		c.h.logger.Info("retrying event hub batch", "function", fn.name, "partition", p, "retry", attempt+1, "delay", delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
	if err != nil {
		c.h.logger.Warn("event hub batch failed; the checkpoint moves past it (no retry policy holds it)",
			"function", fn.name, "partition", p, "first", batch[0].seq, "last", batch[len(batch)-1].seq, "error", err.Error())
	}
	return true
}

// payload builds Data and Metadata for a batch (docs/host-protocol.md §3.2, §3.6).
func (c *ehConsumer) payload(p int, batch []storedEvent) (data, meta map[string]any) {
	eh := c.fn.eventHub
	enc := c.h.opts.EventHubEncoding
	if enc == "" {
		enc = EventHubEncodingHost
	}
	pc := map[string]any{
		"FullyQualifiedNamespace":        eh.namespace,
		"EventHubName":                   eh.hub,
		"ConsumerGroup":                  eh.consumerGroup,
		"PartitionId":                    strconv.Itoa(p),
		"IsCheckpointingAfterInvocation": true,
	}
	// The extension also binds TriggerPartitionContext. The reference says it is dropped, but the host's
	// rule drops keys that end in "trigger" (docs/host-protocol.md §3.1), which this one does not: the double sends it, as that
	// rule would.
	meta = map[string]any{"PartitionContext": pc, "TriggerPartitionContext": pc}
	name := c.fn.trigger.Name
	if !eh.many {
		e := batch[0]
		switch eh.dataType {
		case "binary":
			data = map[string]any{name: EncodeValue(e.Body)}
		default:
			data = map[string]any{name: c.oneString(e.Body, enc)}
		}
		if e.PartitionKey != "" {
			meta["PartitionKey"] = EncodeValue(e.PartitionKey)
		}
		meta["Offset"] = EncodeValue(e.offset)
		meta["OffsetString"] = EncodeValue(strconv.FormatInt(e.offset, 10))
		meta["SequenceNumber"] = EncodeValue(e.seq)
		meta["EnqueuedTimeUtc"] = formatDateSeconds(e.enqueued)
		meta["Properties"] = properties(e)
		meta["SystemProperties"] = systemProperties(e)
		return data, meta
	}

	bodies := make([]any, len(batch))
	keys := make([]any, len(batch))
	offsets := make([]any, len(batch))
	offsetStrings := make([]any, len(batch))
	seqs := make([]any, len(batch))
	times := make([]any, len(batch))
	props := make([]any, len(batch))
	sysProps := make([]any, len(batch))
	for i, e := range batch {
		switch {
		case eh.dataType == "binary":
			bodies[i] = base64.StdEncoding.EncodeToString(e.Body)
		case eh.dataType == "" && json.Valid(e.Body):
			// [inferred] object[]: each body parsed as JSON. A body that is not JSON fails the binding in the
			// host; the double passes it as a string instead.
			bodies[i] = json.RawMessage(e.Body)
		case enc == EventHubEncodingQuotedElements:
			bodies[i] = quoteJSON(validUTF8(e.Body))
		default:
			bodies[i] = validUTF8(e.Body)
		}
		if e.PartitionKey != "" {
			keys[i] = e.PartitionKey
		}
		offsets[i] = e.offset
		offsetStrings[i] = strconv.FormatInt(e.offset, 10)
		seqs[i] = e.seq
		times[i] = formatDateTimeFull(e.enqueued)
		props[i] = properties(e)
		sysProps[i] = systemProperties(e)
	}
	data = map[string]any{name: c.array(bodies, enc)}
	for k, v := range map[string][]any{
		"PartitionKeyArray": keys, "OffsetArray": offsets, "OffsetStringArray": offsetStrings,
		"SequenceNumberArray": seqs, "EnqueuedTimeUtcArray": times, "PropertiesArray": props,
		"SystemPropertiesArray": sysProps,
	} {
		meta[k] = c.array(v, enc)
	}
	return data, meta
}

// array is a .NET array value on the wire: JsonConvert.SerializeObject's text as a JSON string (docs/host-protocol.md §3.2, last
// row), or the array itself with EventHubEncodingArray.
func (c *ehConsumer) array(elems []any, enc EventHubEncoding) any {
	if enc == EventHubEncodingArray {
		return elems
	}
	b, err := marshalNoEscape(elems)
	if err != nil {
		// Every element is a string, number, map or valid JSON: this cannot fail.
		panic(fmt.Sprintf("fakehost: encoding an event batch: %v", err))
	}
	return string(b)
}

// oneString is a cardinality-one string body: the .NET string JSON-encoded as a string (docs/host-protocol.md §3.2), or once only
// with EventHubEncodingArray (how fixtures that encode once send it).
func (c *ehConsumer) oneString(body []byte, enc EventHubEncoding) any {
	s := validUTF8(body)
	if enc == EventHubEncodingArray {
		return s
	}
	return EncodeValue(s)
}

func validUTF8(b []byte) string { return strings.ToValidUTF8(string(b), "\uFFFD") }

func properties(e storedEvent) map[string]any {
	if e.Properties == nil {
		return map[string]any{}
	}
	return e.Properties
}

func systemProperties(e storedEvent) map[string]any {
	sp := map[string]any{
		"x-opt-sequence-number": e.seq,
		"x-opt-offset":          strconv.FormatInt(e.offset, 10),
		"x-opt-enqueued-time":   formatDateTimeFull(e.enqueued),
	}
	if e.PartitionKey != "" {
		sp["x-opt-partition-key"] = e.PartitionKey
	}
	return sp
}
