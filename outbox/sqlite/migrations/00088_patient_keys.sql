-- socialrx migration 88 (issue 12): the two indexes of a referral's patient hold the key alone, no longer
-- (key, updated_at, id), so that a new version of a referral (which moves updated_at, and assigns the
-- patient's columns only when they change: sqlstore's WriteVersion) writes none of their pages.
--   * A version a delivery writes (a requested referral's businessStatus and lastUpdated) wrote one page of
--     each for almost every referral: patients' keys are spread over the whole index, so that the versions
--     of one batch of deliveries share no page of it.
--   * A search for one patient sorts that patient's few referrals by (updated_at, id) instead of reading
--     them in that order; the search names the index (sqlstore's narrowIndex), as SQLite's planner, without
--     statistics, would rather read the practice's whole index in order than sort.
-- Measured from the WAL of a real database file (the pages one batch of ten deliveries writes, attributed
-- to each b-tree): see TestVersionsWriteNoPatientIndexPage.

-- +goose Up
DROP INDEX referrals_patient_ref;
CREATE INDEX referrals_patient_ref ON referrals (patient_ref);
DROP INDEX referrals_patient_nhs;
CREATE INDEX referrals_patient_nhs ON referrals (patient_nhs_number);

-- +goose Down
DROP INDEX referrals_patient_nhs;
CREATE INDEX referrals_patient_nhs ON referrals (patient_nhs_number, updated_at, id);
DROP INDEX referrals_patient_ref;
CREATE INDEX referrals_patient_ref ON referrals (patient_ref, updated_at, id);
