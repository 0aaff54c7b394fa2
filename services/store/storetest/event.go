package storetest

// eventCases are the conformance cases of store.EventStore.
var eventCases = []suiteCase{}
