package storetest

// flowRunCases are the conformance cases of store.FlowRunStore.
var flowRunCases = []suiteCase{}
