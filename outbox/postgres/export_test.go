package postgres

// RecordAttemptsStatement is the statement that records a batch of attempts, for tests of its plan.
var RecordAttemptsStatement = recordAttemptsStatement
