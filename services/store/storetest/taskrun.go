package storetest

// taskRunCases are the conformance cases of store.TaskRunStore.
var taskRunCases = []suiteCase{}
