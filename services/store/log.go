package store

// LogStore is the persistence of log rows; see the methods' comments.
type LogStore interface {
}
