-- socialrx migration 93 (issue 12): one index fewer for every intake to write.
--
-- referral_identifiers_system_value (system, value) had one reader: the search by identifier with a system
-- (Task?identifier=system|value and ServiceRequest's), whose subquery asks for system = ? AND value = ?.
-- referral_identifiers_value (value) serves it as well: it finds the few rows holding the value, under any
-- practice and system, and the system is checked on those rows. The search without a system already read
-- that index. Intake's own lookup reads the primary key (practice_ods, system, value). Every create wrote
-- an entry of the dropped index for each of its identifiers, on a page of its own.

-- +goose Up
DROP INDEX referral_identifiers_system_value;

-- +goose Down
CREATE INDEX referral_identifiers_system_value ON referral_identifiers (system, value);
