package audit

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	bolt "go.etcd.io/bbolt"
)

// CheckpointType is the JWS "typ" header of a checkpoint, so that nothing
// else the gateway signs (a consent receipt, say) can pass for one.
const CheckpointType = "trustgate-checkpoint+json"

// Checkpoint is a signed statement of the log's state: after Size entries
// the Merkle root was Root and the chain hash of the last entry was Head.
// The signed form is a compact JWS (RFC 7515) whose protected header holds
// alg (ES256 or EdDSA), kid and typ = CheckpointType, and whose payload is
// the JSON object of the fields below, in this order
// (docs/auditing.md):
//
//	{"log":"trustgate","size":1042,"root":"<64 hex>","head":"<64 hex>","time":"2026-11-22T12:00:00Z"}
type Checkpoint struct {
	Log  string    `json:"log"`  // the gateway id
	Size uint64    `json:"size"` // entries covered: 1..Size
	Root string    `json:"root"` // RFC 9162 root hash over entries 1..Size, lowercase hex
	Head string    `json:"head"` // chain hash of entry Size, lowercase hex
	Time time.Time `json:"time"` // when it was signed (UTC)

	JWS   string `json:"-"` // the compact JWS it was read from or signed as
	KeyID string `json:"-"` // the kid of the key that signed it
}

// checkpointAlgs is the closed list of signature algorithms accepted.
var checkpointAlgs = map[jwa.SignatureAlgorithm]bool{jwa.ES256: true, jwa.EdDSA: true}

// ParseCheckpoint reads a compact JWS checkpoint. If keys is not nil, the
// signature must verify with the key of keys named by the header's kid;
// if keys is nil the signature is not checked (the caller says so).
// Errors wrap ErrBadCheckpoint.
func ParseCheckpoint(compact []byte, keys jwk.Set) (*Checkpoint, error) {
	compact = bytes.TrimSpace(compact)
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadCheckpoint, fmt.Sprintf(format, args...))
	}
	msg, err := jws.Parse(compact, jws.WithCompact())
	if err != nil {
		return nil, bad("not a compact JWS: %v", err)
	}
	if len(msg.Signatures()) != 1 {
		return nil, bad("want one signature, found %d", len(msg.Signatures()))
	}
	h := msg.Signatures()[0].ProtectedHeaders()
	alg := h.Algorithm()
	if !checkpointAlgs[alg] {
		return nil, bad("algorithm %q is not one of ES256, EdDSA", alg)
	}
	if h.Type() != CheckpointType {
		return nil, bad("typ is %q, want %q", h.Type(), CheckpointType)
	}
	if len(h.Critical()) > 0 {
		return nil, bad("crit header is not supported")
	}
	kid := h.KeyID()
	if kid == "" {
		return nil, bad("no kid in the protected header")
	}
	payload := msg.Payload()
	if keys != nil {
		key, ok := keys.LookupKeyID(kid)
		if !ok {
			return nil, bad("signed with key %q, which is not among the trusted keys", kid)
		}
		verified, err := jws.Verify(compact, jws.WithKey(alg, key))
		if err != nil {
			return nil, bad("signature does not verify with key %q", kid)
		}
		payload = verified
	}
	cp, err := decodeCheckpointPayload(payload)
	if err != nil {
		return nil, bad("%v", err)
	}
	cp.JWS, cp.KeyID = string(compact), kid
	return cp, nil
}

func decodeCheckpointPayload(payload []byte) (*Checkpoint, error) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	var cp Checkpoint
	if err := dec.Decode(&cp); err != nil {
		return nil, fmt.Errorf("payload: %v", err)
	}
	if dec.More() {
		return nil, errors.New("payload: data after the object")
	}
	switch {
	case cp.Log == "":
		return nil, errors.New("payload: no log id")
	case cp.Size == 0:
		return nil, errors.New("payload: size is 0")
	case !isHexHash([]byte(cp.Root)):
		return nil, errors.New("payload: root is not 64 lowercase hex digits")
	case !isHexHash([]byte(cp.Head)):
		return nil, errors.New("payload: head is not 64 lowercase hex digits")
	case cp.Time.IsZero():
		return nil, errors.New("payload: no time")
	}
	return &cp, nil
}

// payload is the JSON that is signed.
func (cp *Checkpoint) payload() ([]byte, error) {
	c := *cp
	c.Time = c.Time.UTC()
	return json.Marshal(&c)
}

// AddCheckpoint stores a checkpoint signed by the gateway. It checks, in
// the write transaction, that the checkpoint describes this log: its
// size is within the log and above the last stored checkpoint, and its
// root and head are those of the log at that size. Storing a checkpoint
// equal to the last one is a no-op. A failed commit makes the log
// unavailable, as a failed append does.
func (l *Log) AddCheckpoint(ctx context.Context, compact string) (*Checkpoint, error) {
	cp, err := ParseCheckpoint([]byte(compact), nil)
	if err != nil {
		return nil, fmt.Errorf("audit: add checkpoint: %w", err)
	}
	if err := l.Err(); err != nil { // closed, read-only or failed
		return nil, fmt.Errorf("audit: add checkpoint: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("audit: add checkpoint: %w", err)
	}
	// The file must never hold a checkpoint beyond its own head.
	if err := l.settle(); err != nil { // apply.go
		return nil, fmt.Errorf("audit: add checkpoint: %w", err)
	}
	var committed bool
	err = l.db.Update(func(tx *bolt.Tx) error {
		n := l.readHead(tx)
		if cp.Size > n {
			return fmt.Errorf("%w: checkpoint size %d is beyond the log's %d entries", ErrBadCheckpoint, cp.Size, n)
		}
		b := tx.Bucket(bucketCheckpoints)
		if k, v := b.Cursor().Last(); k != nil {
			last, _ := keySeq(k)
			if last == cp.Size && string(v) == cp.JWS {
				return nil
			}
			if last >= cp.Size {
				return fmt.Errorf("%w: checkpoint size %d is not above the last stored checkpoint (%d)", ErrBadCheckpoint, cp.Size, last)
			}
		}
		r := newNodeReader(tx, cp.Size)
		root, err := r.rootAt(cp.Size)
		if err != nil {
			return err
		}
		if hex.EncodeToString(root) != cp.Root {
			return fmt.Errorf("%w: root %s is not the log's root at size %d", ErrBadCheckpoint, cp.Root, cp.Size)
		}
		if h := hashHex(tx.Bucket(bucketEntries).Get(seqKey(cp.Size))); h != cp.Head {
			return fmt.Errorf("%w: head %s is not the chain hash of entry %d", ErrBadCheckpoint, cp.Head, cp.Size)
		}
		b.FillPercent = 1.0
		committed = true
		return b.Put(seqKey(cp.Size), []byte(cp.JWS))
	})
	switch {
	case err == nil:
		return cp, nil
	case committed: // the Put was made: the commit itself failed
		err = fmt.Errorf("audit: add checkpoint: %w: commit failed; refusing appends until a probe append succeeds: %w", ErrUnavailable, err)
		l.fail(err) // recover.go
		return nil, err
	default:
		return nil, fmt.Errorf("audit: add checkpoint: %w", err)
	}
}

// LatestCheckpoint returns the last stored checkpoint, or an error
// wrapping ErrNoCheckpoint. Its signature is not checked here (the
// gateway stored it after signing it); auditors check it with
// ParseCheckpoint and the gateway's public keys.
func (l *Log) LatestCheckpoint(ctx context.Context) (*Checkpoint, error) {
	var raw []byte
	err := l.view(ctx, func(tx *bolt.Tx) error {
		if k, v := tx.Bucket(bucketCheckpoints).Cursor().Last(); k != nil {
			raw = bytes.Clone(v)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("audit: latest checkpoint: %w", err)
	}
	if raw == nil {
		return nil, fmt.Errorf("audit: latest checkpoint: %w", ErrNoCheckpoint)
	}
	cp, err := ParseCheckpoint(raw, nil)
	if err != nil {
		return nil, fmt.Errorf("audit: latest checkpoint: %w", err)
	}
	return cp, nil
}

// CheckpointAt returns the stored checkpoint of size entries, or an error
// wrapping ErrNoCheckpoint if none was signed at that size.
func (l *Log) CheckpointAt(ctx context.Context, size uint64) (*Checkpoint, error) {
	var raw []byte
	err := l.view(ctx, func(tx *bolt.Tx) error {
		raw = bytes.Clone(tx.Bucket(bucketCheckpoints).Get(seqKey(size)))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("audit: checkpoint at %d: %w", size, err)
	}
	if raw == nil {
		return nil, fmt.Errorf("audit: checkpoint at %d: %w", size, ErrNoCheckpoint)
	}
	cp, err := ParseCheckpoint(raw, nil)
	if err != nil {
		return nil, fmt.Errorf("audit: checkpoint at %d: %w", size, err)
	}
	return cp, nil
}

// Signer signs checkpoints (keys.Signer satisfies it).
type Signer interface {
	// Sign returns a compact JWS over payload whose protected header
	// carries alg, kid and typ.
	Sign(ctx context.Context, payload []byte, typ string) (string, error)
}

// CheckpointOptions configure a Checkpointer.
type CheckpointOptions struct {
	// LogID names the log in every checkpoint (the gateway id).
	LogID string
	// Every is the number of new entries that triggers a checkpoint.
	// Zero means 1000.
	Every uint64
	// Interval is how often a checkpoint is made if the log grew, and how
	// often failed publications are retried. Zero means one minute.
	Interval time.Duration
	// Dir, if set, receives every checkpoint as a file
	// checkpoint-<size, 20 digits>.jws and latest.jws, written atomically.
	Dir string
	// Webhook, if set, receives every checkpoint by POST (Content-Type
	// application/jose, the compact JWS as the body); any 2xx is success.
	Webhook string
	// WebhookTimeout bounds each POST. Zero means 5 seconds.
	WebhookTimeout time.Duration
	// SignTimeout bounds each signature. Zero means 5 seconds.
	SignTimeout time.Duration
	// Client makes the webhook calls; nil means a client that does not
	// follow redirects.
	Client *http.Client
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Ticks, if set, replaces the interval ticker (tests).
	Ticks <-chan time.Time
	// Logger receives failures; nil discards them.
	Logger *slog.Logger
}

// Checkpointer makes signed checkpoints of a Log every Every entries or
// Interval (whichever comes first, if the log grew) and on demand,
// stores them in the log file and pushes them to the external
// destinations, retrying a failed push every Interval.
type Checkpointer struct {
	log    *Log
	signer Signer
	o      CheckpointOptions
	kick   chan struct{}

	mu        sync.Mutex // serialises checkpoints; guards the fields below
	last      *Checkpoint
	published map[string]uint64 // destination → size last pushed
	errs      map[string]string // destination → last push error
	signErr   string
}

// NewCheckpointer returns a Checkpointer for l. It reads the last stored
// checkpoint, if any.
func NewCheckpointer(ctx context.Context, l *Log, s Signer, o CheckpointOptions) (*Checkpointer, error) {
	if o.LogID == "" {
		return nil, errors.New("audit: checkpointer: no log id")
	}
	if o.Every == 0 {
		o.Every = 1000
	}
	if o.Interval <= 0 {
		o.Interval = time.Minute
	}
	if o.WebhookTimeout <= 0 {
		o.WebhookTimeout = 5 * time.Second
	}
	if o.SignTimeout <= 0 {
		o.SignTimeout = 5 * time.Second
	}
	if o.Client == nil {
		o.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Checkpointer{log: l, signer: s, o: o, kick: make(chan struct{}, 1), published: map[string]uint64{}, errs: map[string]string{}}
	last, err := l.LatestCheckpoint(ctx)
	switch {
	case errors.Is(err, ErrNoCheckpoint):
	case err != nil:
		return nil, err
	default:
		c.last = last
	}
	return c, nil
}

// Run makes checkpoints and pushes them until ctx ends. Failures are
// logged and retried; Run returns nil when ctx ends.
func (c *Checkpointer) Run(ctx context.Context) error {
	ticks := c.o.Ticks
	if ticks == nil {
		t := time.NewTicker(c.o.Interval)
		defer t.Stop()
		ticks = t.C
	}
	c.publish(ctx) // a push that failed before a restart
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticks:
			c.checkpointLogged(ctx)
		case <-c.log.Grown():
			c.mu.Lock()
			var done uint64
			if c.last != nil {
				done = c.last.Size
			}
			c.mu.Unlock()
			if size, _ := c.log.Head(); size-done >= c.o.Every {
				c.checkpointLogged(ctx)
			}
		case <-c.kick:
		}
		c.publish(ctx)
	}
}

func (c *Checkpointer) checkpointLogged(ctx context.Context) {
	if _, err := c.Checkpoint(ctx); err != nil && !errors.Is(err, ErrNoCheckpoint) && ctx.Err() == nil {
		c.o.Logger.Error("audit checkpoint failed; will retry", "err", err)
	}
}

// Checkpoint makes sure a stored checkpoint covers every entry committed
// so far, signing a new one if the log grew, and returns it. The push to
// the external destinations happens in Run (or Close). It fails with
// ErrNoCheckpoint for an empty log, and with the signer's error (e.g.
// keys.ErrUnavailable) if it cannot sign.
func (c *Checkpointer) Checkpoint(ctx context.Context) (*Checkpoint, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	th := c.log.TreeHead()
	if th.Size == 0 {
		return nil, fmt.Errorf("audit: checkpoint: the log is empty: %w", ErrNoCheckpoint)
	}
	if c.last != nil && c.last.Size >= th.Size {
		return c.last, nil
	}
	cp := &Checkpoint{Log: c.o.LogID, Size: th.Size, Root: th.Root, Head: th.Head, Time: c.o.Now().UTC().Truncate(time.Second)}
	payload, err := cp.payload()
	if err != nil {
		return nil, fmt.Errorf("audit: checkpoint: %w", err)
	}
	sctx, cancel := context.WithTimeout(ctx, c.o.SignTimeout)
	compact, err := c.signer.Sign(sctx, payload, CheckpointType)
	cancel()
	if err != nil {
		c.signErr = err.Error()
		return nil, fmt.Errorf("audit: checkpoint: sign: %w", err)
	}
	c.signErr = ""
	stored, err := c.log.AddCheckpoint(ctx, compact)
	if err != nil {
		return nil, err
	}
	c.last = stored
	select {
	case c.kick <- struct{}{}:
	default:
	}
	return stored, nil
}

// Close makes a last checkpoint (at shutdown) and pushes it, within
// ctx. Call it after Run has returned and before the Log is closed. It
// returns the checkpoint's error; a failed push is logged (and the next
// start pushes again).
func (c *Checkpointer) Close(ctx context.Context) error {
	_, err := c.Checkpoint(ctx)
	if errors.Is(err, ErrNoCheckpoint) {
		err = nil
	}
	_ = c.publish(ctx)
	return err
}

// CheckpointStatus says how far checkpoints have got.
type CheckpointStatus struct {
	Latest       *Checkpoint         `json:"-"`
	SignError    string              `json:"sign_error,omitempty"`
	Destinations []DestinationStatus `json:"destinations"`
}

// DestinationStatus is the state of one external destination.
type DestinationStatus struct {
	Name      string `json:"name"` // "dir" or "webhook"
	Published uint64 `json:"published_size"`
	Error     string `json:"error,omitempty"`
}

// Status reports the latest checkpoint and the state of each push.
func (c *Checkpointer) Status() CheckpointStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := CheckpointStatus{Latest: c.last, SignError: c.signErr, Destinations: []DestinationStatus{}}
	for _, d := range c.destinations() {
		st.Destinations = append(st.Destinations, DestinationStatus{Name: d, Published: c.published[d], Error: c.errs[d]})
	}
	return st
}

func (c *Checkpointer) destinations() []string {
	var out []string
	if c.o.Dir != "" {
		out = append(out, "dir")
	}
	if c.o.Webhook != "" {
		out = append(out, "webhook")
	}
	return out
}

// publish pushes the latest checkpoint to every destination that does
// not have it yet.
func (c *Checkpointer) publish(ctx context.Context) error {
	c.mu.Lock()
	cp := c.last
	var todo []string
	for _, d := range c.destinations() {
		if cp != nil && c.published[d] < cp.Size {
			todo = append(todo, d)
		}
	}
	c.mu.Unlock()
	var errs []error
	for _, d := range todo {
		var err error
		switch d {
		case "dir":
			err = publishDir(c.o.Dir, cp)
		case "webhook":
			err = c.publishWebhook(ctx, cp)
		}
		c.mu.Lock()
		if err != nil {
			c.errs[d] = err.Error()
			errs = append(errs, err)
			c.o.Logger.Error("audit checkpoint push failed; will retry", "destination", d, "size", cp.Size, "err", err)
		} else {
			delete(c.errs, d)
			c.published[d] = max(c.published[d], cp.Size)
		}
		c.mu.Unlock()
	}
	return errors.Join(errs...)
}

// CheckpointFileName is the name a checkpoint of size n gets in the
// checkpoint directory.
func CheckpointFileName(n uint64) string { return fmt.Sprintf("checkpoint-%020d.jws", n) }

func publishDir(dir string, cp *Checkpoint) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("checkpoint dir: %w", err)
	}
	for _, name := range []string{CheckpointFileName(cp.Size), "latest.jws"} {
		if err := writeFileAtomic(filepath.Join(dir, name), []byte(cp.JWS+"\n"), 0o644); err != nil {
			return fmt.Errorf("checkpoint dir: %w", err)
		}
	}
	return syncDir(dir)
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(mode); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

func (c *Checkpointer) publishWebhook(ctx context.Context, cp *Checkpoint) error {
	ctx, cancel := context.WithTimeout(ctx, c.o.WebhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.o.Webhook, bytes.NewReader([]byte(cp.JWS)))
	if err != nil {
		return fmt.Errorf("checkpoint webhook: %w", err)
	}
	req.Header.Set("Content-Type", "application/jose")
	req.Header.Set("X-Trustgate-Checkpoint-Size", fmt.Sprint(cp.Size))
	resp, err := c.o.Client.Do(req)
	if err != nil {
		return fmt.Errorf("checkpoint webhook: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("checkpoint webhook: answered %s", resp.Status)
	}
	return nil
}
