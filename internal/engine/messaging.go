package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
)

// ErrNoResponders means a request reached no subscriber: the node that would answer (for
// example the one holding a device's connection) does not exist.
var ErrNoResponders = errors.New("no responders")

// Subjects for messages between nodes. Each is built from encoded ids, so any device id is safe.
//
//	roost.dev.<device>.<kind>             a device's connection (kick, method, c2d, twin)
//	roost.dev.<device>.m.<module>.<kind>  a module's connection
func DeviceSubject(deviceID, moduleID, kind string) string {
	var sb strings.Builder
	sb.WriteString("roost.dev.")
	sb.WriteString(EncodeToken(deviceID))
	if moduleID != "" {
		sb.WriteString(".m.")
		sb.WriteString(EncodeToken(moduleID))
	}
	sb.WriteByte('.')
	sb.WriteString(kind)
	return sb.String()
}

// Request sends data to subject and waits for one reply until ctx ends. A subject nobody
// listens on fails at once with [ErrNoResponders].
func (e *Engine) Request(ctx context.Context, subject string, data []byte) ([]byte, error) {
	m, err := e.nc.RequestWithContext(ctx, subject, data)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return nil, fmt.Errorf("%w: %s", ErrNoResponders, subject)
		}
		return nil, err
	}
	return m.Data, nil
}

// Inbound is a core message delivered to a [Handler]. Reply answers a request; it does nothing
// for a plain publish.
type Inbound struct {
	Subject string
	Data    []byte
	msg     *nats.Msg
}

// Reply answers the request the message carried.
func (in Inbound) Reply(data []byte) error {
	if in.msg == nil || in.msg.Reply == "" {
		return nil
	}
	return in.msg.Respond(data)
}

// Handler receives core messages.
type Handler func(Inbound)

// Subscription is an interest in a subject; Unsubscribe ends it.
type Subscription struct {
	sub  *nats.Subscription
	once sync.Once
}

// Unsubscribe ends the subscription. It is safe to call more than once.
func (s *Subscription) Unsubscribe() {
	if s == nil {
		return
	}
	s.once.Do(func() { _ = s.sub.Unsubscribe() })
}

// Subscribe calls h for each message on subject, one at a time, on a goroutine of its own. Use
// it for a handful of node-wide subjects; per-device interest goes through a [Mailbox].
func (e *Engine) Subscribe(subject string, h Handler) (*Subscription, error) {
	sub, err := e.nc.Subscribe(subject, func(m *nats.Msg) { h(Inbound{Subject: m.Subject, Data: m.Data, msg: m}) })
	if err != nil {
		return nil, err
	}
	return &Subscription{sub: sub}, nil
}

// PublishCore sends data to subject without storing it (fire and forget).
func (e *Engine) PublishCore(subject string, data []byte) error {
	return e.nc.Publish(subject, data)
}

// Mailbox multiplexes many per-device subscriptions onto one channel, so a node holding 100,000
// connections spends no goroutine per device (a channel subscription costs about 0.7 KB).
type Mailbox struct {
	ch chan *nats.Msg
	e  *Engine
}

// NewMailbox makes a mailbox whose channel holds up to size undelivered messages; beyond that
// the engine drops messages for it (slow consumer), which callers must tolerate.
func (e *Engine) NewMailbox(size int) *Mailbox {
	return &Mailbox{ch: make(chan *nats.Msg, size), e: e}
}

// Subscribe adds subject to the mailbox.
func (mb *Mailbox) Subscribe(subject string) (*Subscription, error) {
	sub, err := mb.e.nc.ChanSubscribe(subject, mb.ch)
	if err != nil {
		return nil, err
	}
	return &Subscription{sub: sub}, nil
}

// Next waits for the next message of any subject in the mailbox, until ctx ends.
func (mb *Mailbox) Next(ctx context.Context) (Inbound, error) {
	select {
	case m := <-mb.ch:
		return Inbound{Subject: m.Subject, Data: m.Data, msg: m}, nil
	case <-ctx.Done():
		return Inbound{}, ctx.Err()
	}
}

// DeviceSubjects is the wildcard subject that matches one kind of message for every device
// (modules false) or every module (modules true), e.g. all kicks.
func DeviceSubjects(kind string, modules bool) string {
	if modules {
		return "roost.dev.*.m.*." + kind
	}
	return "roost.dev.*." + kind
}
