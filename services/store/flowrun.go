package store

// FlowRunStore is the persistence of flowrun rows; see the methods' comments.
type FlowRunStore interface {
}
