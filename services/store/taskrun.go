package store

// TaskRunStore is the persistence of taskrun rows; see the methods' comments.
type TaskRunStore interface {
}
