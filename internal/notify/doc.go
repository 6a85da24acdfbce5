// Package notify owns access notifications: the durable outbox that
// delivers them to partners' webhooks, each partner's inbox that
// GET /v1/notifications reads. (The child's lead professional, who is
// notified besides the provider, is kept in the involvement index's early
// help episodes: internal/involvement.)
//
// Storage is one bbolt file (data/outbox.db), exclusively this package's:
//
//	meta                     "version" → big-endian uint64
//	inbox/<partner>          big-endian seq → provider.Notification JSON
//	pending                  partner ‖ 0x00 ‖ big-endian seq → delivery state JSON
//	leads                    no longer written (the lead professional was kept here before the index)
//
// Promises:
//
//   - Add is atomic and durable: when it returns, every notification is in
//     its recipient's inbox with the recipient's next seq, and queued for
//     its webhook if the recipient has one; nothing is ever half added.
//   - Add holds what it queues until Release (the disclosure is recorded in
//     the audit log) or Remove (it could not be: it did not happen). A
//     notification still held when the store is next opened is released:
//     the gateway may have recorded the disclosure before it stopped.
//   - Delivery is at least once, with a stable id: a notification leaves
//     the queue only after the webhook answered 2xx, so a crash or restart
//     between the answer and the bookkeeping resends the same id (receivers
//     de-duplicate on it). Per partner, notifications are delivered in seq
//     order, one at a time; after a failure the partner waits an
//     exponential backoff (RetryMin doubling to RetryMax, with jitter), so a
//     dead webhook neither is hammered nor delays other partners.
//   - A partner sees only its own inbox; seqs are per partner, so a cursor
//     reveals nothing about other partners' traffic.
//   - The inbox holds NHS numbers (a notification names the child): the
//     file is created 0600, and notifications older than the retention are
//     purged once delivered.
package notify
