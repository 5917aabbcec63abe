package engine

import "github.com/nats-io/nats.go"

// DeleteAsync removes key without waiting for the engine to confirm it. Use it where a key left
// behind does no harm (it also goes with the bucket's TTL) and the caller should not wait, such as
// the state of a message that is already settled.
func (e *Engine) DeleteAsync(b *Bucket, key string) error {
	m := nats.NewMsg("$KV." + b.kv.Bucket() + "." + key)
	m.Header.Set("KV-Operation", "DEL")
	_, err := e.js.PublishMsgAsync(m)
	return mapErr(err)
}
