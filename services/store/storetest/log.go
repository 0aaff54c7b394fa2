package storetest

// logCases are the conformance cases of store.LogStore.
var logCases = []suiteCase{}
