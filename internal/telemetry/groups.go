package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/errcode"
)

// DefaultConsumerGroup always exists and cannot be deleted, as on IoT Hub's built-in endpoint.
const DefaultConsumerGroup = "$Default"

// ConsumerGroup is a named view of the telemetry with checkpoints of its own.
type ConsumerGroup struct {
	Name        string    `json:"name"`
	CreatedTime time.Time `json:"createdTime"`
}

// Checkpoint is where a consumer group got to in one partition: it resumes after SequenceNumber.
type Checkpoint struct {
	Partition      int       `json:"partition"`
	SequenceNumber uint64    `json:"sequenceNumber"`
	UpdatedTime    time.Time `json:"updatedTime"`
}

// ValidateConsumerGroupName checks a consumer group name as Event Hubs does: 1 to 50 letters,
// digits, '.', '-' and '_', starting and ending with a letter or digit; or $Default.
func ValidateConsumerGroupName(name string) error {
	if strings.EqualFold(name, DefaultConsumerGroup) {
		return nil
	}
	bad := func(why string) error {
		return errcode.New(errcode.ArgumentInvalid, "consumer group name '%s' is not valid: %s", printable(name), why)
	}
	if name == "" || len(name) > 50 {
		return bad("it must be 1 to 50 characters long")
	}
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !alnum(c) && c != '.' && c != '-' && c != '_' {
			return bad("only letters, digits, '.', '-' and '_' are allowed")
		}
	}
	if !alnum(name[0]) || !alnum(name[len(name)-1]) {
		return bad("it must start and end with a letter or digit")
	}
	return nil
}

func printable(s string) string {
	if len(s) > 60 {
		s = s[:60] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == ';' {
			return '?'
		}
		return r
	}, s)
}

// Names compare without regard to case, as Event Hubs' do; the key holds the lower-cased form.
func groupKey(name string) string { return "cg." + engine.EncodeToken(strings.ToLower(name)) }

func checkpointKey(group string, partition int) string {
	return "cp." + engine.EncodeToken(strings.ToLower(group)) + "." + strconv.Itoa(partition)
}

func (p *Pipeline) ensureDefaultGroup(ctx context.Context) error {
	data, _ := json.Marshal(ConsumerGroup{Name: DefaultConsumerGroup, CreatedTime: time.Now().UTC()})
	if _, err := p.kv.Create(ctx, groupKey(DefaultConsumerGroup), data); err != nil && !errors.Is(err, engine.ErrExists) {
		return err
	}
	return nil
}

func storeErr(err error, what string) error {
	var e *errcode.Error
	if errors.As(err, &e) {
		return err
	}
	return errcode.Wrap(errcode.ServiceUnavailable, err, "could not %s; retry", what)
}

// CreateConsumerGroup adds a consumer group; 409000 GenericConflict if it exists.
func (p *Pipeline) CreateConsumerGroup(ctx context.Context, name string) (ConsumerGroup, error) {
	if err := ValidateConsumerGroupName(name); err != nil {
		return ConsumerGroup{}, err
	}
	g := ConsumerGroup{Name: name, CreatedTime: time.Now().UTC()}
	data, _ := json.Marshal(g)
	if _, err := p.kv.Create(ctx, groupKey(name), data); err != nil {
		if errors.Is(err, engine.ErrExists) {
			return ConsumerGroup{}, errcode.New(errcode.GenericConflict, "consumer group '%s' already exists", name)
		}
		return ConsumerGroup{}, storeErr(err, "create the consumer group")
	}
	return g, nil
}

// ConsumerGroup returns a consumer group; 404000 GenericNotFound if there is none of that name.
func (p *Pipeline) ConsumerGroup(ctx context.Context, name string) (ConsumerGroup, error) {
	if err := ValidateConsumerGroupName(name); err != nil {
		return ConsumerGroup{}, err
	}
	ent, err := p.kv.Get(ctx, groupKey(name))
	if errors.Is(err, engine.ErrNotFound) {
		return ConsumerGroup{}, errcode.New(errcode.GenericNotFound, "consumer group '%s' does not exist", printable(name))
	}
	if err != nil {
		return ConsumerGroup{}, storeErr(err, "read the consumer group")
	}
	var g ConsumerGroup
	if err := json.Unmarshal(ent.Value, &g); err != nil {
		return ConsumerGroup{}, storeErr(err, "read the consumer group")
	}
	return g, nil
}

// ConsumerGroups lists the consumer groups, $Default first, then by name.
func (p *Pipeline) ConsumerGroups(ctx context.Context) ([]ConsumerGroup, error) {
	var out []ConsumerGroup
	err := p.kv.Scan(ctx, []string{"cg.*"}, func(e engine.Entry) bool {
		var g ConsumerGroup
		if json.Unmarshal(e.Value, &g) == nil {
			out = append(out, g)
		}
		return true
	})
	if err != nil {
		return nil, storeErr(err, "list the consumer groups")
	}
	sort.Slice(out, func(i, j int) bool {
		di, dj := out[i].Name == DefaultConsumerGroup, out[j].Name == DefaultConsumerGroup
		if di != dj {
			return di
		}
		return strings.ToLower(out[i].Name) < strings.ToLower(out[j].Name)
	})
	return out, nil
}

// DeleteConsumerGroup removes a consumer group and its checkpoints. $Default cannot be deleted
// (400003 InvalidOperation); a missing group is 404000 GenericNotFound. Readers already open on
// the group keep reading, but can no longer checkpoint.
func (p *Pipeline) DeleteConsumerGroup(ctx context.Context, name string) error {
	if err := ValidateConsumerGroupName(name); err != nil {
		return err
	}
	if strings.EqualFold(name, DefaultConsumerGroup) {
		return errcode.New(errcode.InvalidOperation, "the $Default consumer group cannot be deleted")
	}
	if _, err := p.ConsumerGroup(ctx, name); err != nil {
		return err
	}
	if err := p.kv.Delete(ctx, groupKey(name), 0); err != nil && !errors.Is(err, engine.ErrNotFound) {
		return storeErr(err, "delete the consumer group")
	}
	for i := 0; i < p.cfg.Partitions; i++ {
		if err := p.kv.Delete(ctx, checkpointKey(name, i), 0); err != nil && !errors.Is(err, engine.ErrNotFound) {
			return storeErr(err, "delete the consumer group's checkpoints")
		}
	}
	return nil
}

// SetCheckpoint records that group has processed partition up to and including seq.
func (p *Pipeline) SetCheckpoint(ctx context.Context, group string, partition int, seq uint64) error {
	if partition < 0 || partition >= p.cfg.Partitions {
		return errcode.New(errcode.ArgumentInvalid, "partition %d does not exist (the hub has %d)", partition, p.cfg.Partitions)
	}
	if _, err := p.ConsumerGroup(ctx, group); err != nil {
		return err
	}
	data, _ := json.Marshal(Checkpoint{Partition: partition, SequenceNumber: seq, UpdatedTime: time.Now().UTC()})
	if _, err := p.kv.Put(ctx, checkpointKey(group, partition), data); err != nil {
		return storeErr(err, "store the checkpoint")
	}
	return nil
}

// Checkpoints returns group's checkpoints by partition; partitions without one are absent.
func (p *Pipeline) Checkpoints(ctx context.Context, group string) (map[int]Checkpoint, error) {
	if _, err := p.ConsumerGroup(ctx, group); err != nil {
		return nil, err
	}
	out := map[int]Checkpoint{}
	for i := 0; i < p.cfg.Partitions; i++ {
		ent, err := p.kv.Get(ctx, checkpointKey(group, i))
		if errors.Is(err, engine.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, storeErr(err, "read the checkpoints")
		}
		var cp Checkpoint
		if err := json.Unmarshal(ent.Value, &cp); err != nil {
			continue
		}
		out[i] = cp
	}
	return out, nil
}
