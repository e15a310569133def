package sqlstore

// The static statements of the shared scripts, written with ? placeholders (Dialect.Compile rebinds them
// once per store).
const (
	// InsertReferral writes a new referral's row (arguments: ReferralRow.InsertArgs).
	InsertReferral = `INSERT INTO referrals (id, task_id, service_request_id, practice_ods, service_id, status,
	business_status, patient_ref, patient_nhs_number, requester_ref, version, created_at, updated_at,
	fingerprint, identifiers, referral, service_request, service_request_status, deadline_step, parent_task_id)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

	// UpdateReferral sets a referral's new version (arguments: VersionRow.UpdateArgs).
	UpdateReferral = `UPDATE referrals SET practice_ods = ?, service_id = ?, status = ?, business_status = ?,
	patient_ref = ?, patient_nhs_number = ?, requester_ref = ?, version = ?, updated_at = ?, referral = ?,
	service_request_status = ?, deadline_step = ?
	WHERE id = ? AND version = ?`

	insertIdentifier = `INSERT INTO referral_identifiers (practice_ods, system, value, referral_id) VALUES (?, ?, ?, ?)`

	// insertMessageHead and insertMessageTail surround Dialect.NextSeq.
	insertMessageHead = `INSERT INTO outbox_messages (id, seq, referral_id, referral_version, destination_kind,
	destination_id, type, payload, state, attempts, created_at, next_attempt_at, budget_from)
	VALUES (?, `
	insertMessageTail = `, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)`

	// insertEvent writes a referral version's timeline entry with the referral as it was, or with none and
	// as_previous set (arguments: Version.EventArgs).
	insertEvent = `INSERT INTO referral_events (referral_id, version, at, cause, status, business_status,
	status_reason, referral, as_previous) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`

	selectReferrals = `SELECT ` + ReferralCols + ` FROM referrals`
	selectReferral  = selectReferrals + ` WHERE `
	// byAnyID selects a referral by referral, task or ServiceRequest id (the id given three times).
	byAnyID          = `id = ? OR task_id = ? OR service_request_id = ?`
	byID             = `id = ?`
	selectReferralID = `SELECT id FROM referrals WHERE ` + byAnyID
	selectIdentifier = `SELECT referral_id FROM referral_identifiers WHERE practice_ods = ? AND system = ? AND value = ?`
	selectTimeline   = `SELECT version, at, cause, status, business_status, status_reason
		FROM referral_events WHERE referral_id = ? ORDER BY version`
	// selectVersions and selectVersion read the kept versions (versions written before migration 20 have an
	// empty referral and as_previous unset). An entry with as_previous set holds no referral: its version is
	// the latest full copy before it with the entry's status, business status and status reason
	// (Version.AsPrevious); selectVersion reads that copy with it (base), selectVersions in its order.
	selectVersions = `SELECT version, at, referral, as_previous, status, business_status, status_reason
		FROM referral_events WHERE referral_id = ? AND (length(referral) > 0 OR as_previous) ORDER BY version`
	selectVersion = `SELECT e.version, e.at, COALESCE(b.referral, e.referral), e.as_previous, e.status,
		e.business_status, e.status_reason
		FROM referral_events e LEFT JOIN referral_events b ON e.as_previous AND b.referral_id = e.referral_id
			AND b.version = (SELECT max(p.version) FROM referral_events p
				WHERE p.referral_id = e.referral_id AND p.version < e.version AND length(p.referral) > 0)
		WHERE e.referral_id = ? AND e.version = ? AND (length(e.referral) > 0 OR b.referral IS NOT NULL)`
	selectTimelineMessages = `SELECT id, referral_version, withdrawn_version FROM outbox_messages
		WHERE referral_id = ? ORDER BY seq`
	selectCreated = `SELECT id, state FROM outbox_messages WHERE referral_id = ?
			AND destination_kind = ? AND destination_id = ? AND type = ? ORDER BY seq`
	withdrawMessage = `UPDATE outbox_messages SET state = 'cancelled', last_error = ?,
			lease_owner = '', lease_until = 0, withdrawn_version = ? WHERE id = ?`
	selectStamp = `SELECT max(updated_at) FROM referrals`

	selectMessages = `SELECT ` + MessageCols + ` FROM outbox_messages WHERE `
	selectMessage  = selectMessages + `id = ?`
	selectAttempts = `SELECT n, started_at, latency_us, status_code, error, response
		FROM outbox_attempts WHERE message_id = ? ORDER BY n`
	selectReplays = `SELECT at, actor, reason, from_state FROM outbox_replays
		WHERE message_id = ? ORDER BY id`
	messageExists = `SELECT 1 FROM outbox_messages WHERE id = ?`
	insertAttempt = `INSERT INTO outbox_attempts (message_id, n, started_at, latency_us,
			status_code, error, response) VALUES (?, (SELECT COALESCE(MAX(n), 0) + 1 FROM outbox_attempts WHERE message_id = ?),
			?, ?, ?, ?, ?)`
	// moveLeased moves message ? on if owner ? still holds its lease, and returns its referral.
	moveLeased = `UPDATE outbox_messages SET state = ?, attempts = attempts + 1,
			last_error = ?, lease_owner = '', lease_until = 0,
			next_attempt_at = COALESCE(?, next_attempt_at), delivered_at = COALESCE(?, delivered_at)
			WHERE id = ? AND state = 'inflight' AND lease_owner = ? RETURNING COALESCE(referral_id, '')`
	releaseMessages = `UPDATE outbox_messages SET state = 'pending', lease_owner = '', lease_until = 0,
			next_attempt_at = CASE WHEN next_attempt_at < ? THEN next_attempt_at ELSE ? END
			WHERE state = 'inflight' AND lease_owner = ?`
	replayMessage = `UPDATE outbox_messages SET state = 'pending', next_attempt_at = ?,
				budget_from = ?, lease_owner = '', lease_until = 0 WHERE id = ?`
	insertReplay = `INSERT INTO outbox_replays (message_id, at, actor, reason, from_state)
				VALUES (?, ?, ?, ?, ?)`
	countMessages = `SELECT state, COUNT(*) FROM outbox_messages GROUP BY state`
	// OldestPending is the oldest pending message's creation time (CountMessages) as PostgreSQL reads it; a
	// dialect may name the index to read after the table (Dialect.OldestPending). Exported for the backends'
	// plan tests.
	OldestPending = oldestPendingHead + oldestPendingTail
	// oldestPendingHead and oldestPendingTail surround Dialect.PendingCreatedIndex.
	oldestPendingHead = `SELECT MIN(created_at) FROM outbox_messages`
	oldestPendingTail = ` WHERE state = 'pending'`
	expireNonces      = `DELETE FROM used_nonces WHERE expires_at <= ?`
	insertNonce       = `INSERT INTO used_nonces (nonce, expires_at) VALUES (?, ?) ON CONFLICT (nonce) DO NOTHING`

	upsertProbe = `INSERT INTO health_probes (instance, at) VALUES (?, ?)
			ON CONFLICT (instance) DO UPDATE SET at = excluded.at`

	selectSubscriptions = `SELECT ` + SubscriptionCols + ` FROM subscriptions WHERE `
	selectSubscription  = selectSubscriptions + `id = ?`
	insertSubscription  = `INSERT INTO subscriptions (id, owner_client_id, practice_ods, criteria,
			endpoint, headers, payload, status, events_since_start, base_url, created_at, updated_at, resource,
			error, topic, heartbeat_period)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, '', ?, ?)`
	setSubscriptionStatus = `UPDATE subscriptions SET status = ?, error = ?, updated_at = ? WHERE id = ?`
	// changeSubscription is an outbox.SubscriptionChange: status, error, updated_at, id, from.
	changeSubscription = `UPDATE subscriptions SET status = ?, error = ?, updated_at = ? WHERE id = ? AND status = ?`
	// countActiveSubscriptions counts an owner's subscriptions that still notify (the per-client cap).
	countActiveSubscriptions = `SELECT COUNT(*) FROM subscriptions WHERE owner_client_id = ? AND status IN ('active', 'error')`
	// heartbeatDue lists the active subscriptions with a heartbeat period, nothing queued and nothing queued
	// for a period (? = now in microseconds).
	heartbeatDue = `SELECT ` + SubscriptionCols + ` FROM subscriptions s
			WHERE s.status = 'active' AND s.heartbeat_period > 0
			AND NOT EXISTS (SELECT 1 FROM outbox_messages e WHERE e.destination_kind = 'subscription'
				AND e.destination_id = s.id AND e.state IN ('pending', 'inflight', 'dead'))
			AND COALESCE((SELECT e.created_at FROM outbox_messages e WHERE e.destination_kind = 'subscription'
				AND e.destination_id = s.id ORDER BY e.seq DESC LIMIT 1), s.created_at) + s.heartbeat_period * 1000000 <= ?
			ORDER BY s.id`
	numberEvent = `UPDATE subscriptions SET events_since_start = events_since_start + 1
			WHERE id = ? RETURNING events_since_start`
)

// indexed is the hint after a table name that makes the statement read index (Dialect.IndexedBy), or "".
func (d Dialect) indexed(index string) string {
	if d.IndexedBy {
		return " INDEXED BY " + index
	}
	return ""
}

// statements lists the static statements Dialect.Compile rebinds.
func statements() []string {
	return append([]string{
		InsertReferral, UpdateReferral, insertIdentifier, insertEvent, selectReferral + byAnyID,
		selectReferral + byID, selectReferralID, selectIdentifier, selectTimeline, selectVersions, selectVersion,
		selectTimelineMessages, changeSubscription, heartbeatDue,
		selectCreated, withdrawMessage, selectMessage, selectAttempts, selectReplays, messageExists, insertAttempt,
		moveLeased, releaseMessages, replayMessage, insertReplay, expireNonces, insertNonce, selectSubscription,
		insertSubscription, setSubscriptionStatus, numberEvent, upsertProbe, countActiveSubscriptions,
		selectDiscard, discardMessage, insertDiscard, selectActivePause, insertPause, endPause, resumeMessages,
		selectPauses, CountByDestination, countDelivered, inboxStats,
	}, append(append(append(sessionStatements(), auditStatements()...), erasureStatements()...), retentionStatements()...)...)
}

// selectSuccessor is the statement (chainIndex: Dialect.ChainIndex) that says whether a later unfinished
// message waits behind message ? (the id given twice): successorOf for o, the message of that id.
func selectSuccessor(chainIndex string) string {
	return `SELECT EXISTS (SELECT 1 FROM outbox_messages o, outbox_messages e` + chainIndex + ` WHERE o.id = ?
			AND ` + chainSuccessor("o") + `)
		OR EXISTS (SELECT 1 FROM outbox_messages o, outbox_messages e WHERE o.id = ? AND ` + subscriptionSuccessor("o") + `)`
}

// successorOf is the term that says whether a later unfinished message waits behind message o (an alias, or
// the table's name in an UPDATE's RETURNING): in its referral's chain at its destination, or at its
// subscription destination whatever the referral. The state terms are spelled as the unfinished-message
// indexes' WHERE; chainIndex (Dialect.ChainIndex) follows the chain probe's table.
func successorOf(o, chainIndex string) string {
	return `(EXISTS (SELECT 1 FROM outbox_messages e` + chainIndex + ` WHERE ` + chainSuccessor(o) + `)
		OR EXISTS (SELECT 1 FROM outbox_messages e WHERE ` + subscriptionSuccessor(o) + `))`
}

// chainSuccessor and subscriptionSuccessor are the conditions on e, an unfinished message after o, in o's
// chain, and at o's subscription destination.
func chainSuccessor(o string) string {
	return `e.referral_id = ` + o + `.referral_id AND e.destination_kind = ` + o + `.destination_kind
			AND e.destination_id = ` + o + `.destination_id AND ` + unfinishedAfter(o)
}

func subscriptionSuccessor(o string) string {
	return o + `.destination_kind = 'subscription' AND e.destination_kind = ` + o + `.destination_kind
			AND e.destination_id = ` + o + `.destination_id AND ` + unfinishedAfter(o)
}

func unfinishedAfter(o string) string {
	return `e.state <> 'delivered' AND e.state <> 'cancelled' AND e.state <> 'discarded' AND e.seq > ` + o + `.seq`
}
