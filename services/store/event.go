package store

// EventStore is the persistence of event rows; see the methods' comments.
type EventStore interface {
}
