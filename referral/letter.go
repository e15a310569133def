package referral

import (
	"context"
	"errors"
	"time"

	"github.com/socialrx/socialrx/letter"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// The GP letter (issue 14): regenerated on every read from the referral's kept versions, up to the one that
// closed it, so it never changes once issued and needs no storage of its own.

// Audit resource types of the letter's reads.
const (
	LetterDocument = "DocumentReference"
	LetterBinary   = "Binary"
)

// GPLetter is a closed referral's GP letter: the version that closed it, what the letter says, the PDF.
type GPLetter struct {
	Referral outbox.Referral
	Letter   letter.Letter
	PDF      []byte
}

// Letter returns the GP letter whose id is id (mapping.LetterID), read as resource typ (LetterDocument or
// LetterBinary, for the audit trail), if the caller may see the referral (its practice, an admin) and the
// referral closed with a letter. Anything else, and a malformed id, is outbox.ErrNotFound; a community
// service is refused (MayReadGPRecord: the letter names the person beyond its sharing profile). Every read
// is audited; one that cannot be is refused (fault.Unavailable).
func (s *Service) Letter(ctx context.Context, c Caller, id, typ string) (GPLetter, error) {
	if err := MayReadGPRecord(c); err != nil {
		return GPLetter{}, err
	}
	taskID, ok := mapping.ParseLetterID(id)
	if !ok {
		return GPLetter{}, notVisible("letter")
	}
	ref, err := s.store.GetReferral(ctx, taskID)
	if err != nil {
		return GPLetter{}, err
	}
	if !Visible(c.Client, ref) || ref.Record.TaskID != taskID {
		return GPLetter{}, notVisible("letter")
	}
	return s.issued(ctx, c, ref, typ)
}

// LettersFor returns the GP letters of the referrals whose ServiceRequest ids are srIDs, among those the
// caller may see and that closed with one (the others are left out), each read audited as a
// DocumentReference; a community service is refused (MayReadGPRecord).
func (s *Service) LettersFor(ctx context.Context, c Caller, srIDs []string) ([]GPLetter, error) {
	if err := MayReadGPRecord(c); err != nil {
		return nil, err
	}
	var out []GPLetter
	for _, id := range srIDs {
		ref, err := s.store.GetReferral(ctx, id)
		if err != nil || !Visible(c.Client, ref) || ref.Record.ServiceRequestID != id || !ref.HasLetter() {
			if err != nil && !errors.Is(err, outbox.ErrNotFound) {
				return nil, err
			}
			continue
		}
		gl, err := s.issued(ctx, c, ref, LetterDocument)
		if err != nil {
			return nil, err
		}
		out = append(out, gl)
	}
	return out, nil
}

// issued composes the letter of ref (its current version) from its kept versions and audits the read.
func (s *Service) issued(ctx context.Context, c Caller, ref outbox.Referral, typ string) (GPLetter, error) {
	if !ref.HasLetter() {
		return GPLetter{}, notVisible("letter")
	}
	versions, err := s.store.ReferralVersions(ctx, ref.Record.ID)
	if err != nil {
		return GPLetter{}, err
	}
	gl, err := composeLetter(versions, ref, s.cfg.Directory, s.uk)
	if err != nil {
		return GPLetter{}, err
	}
	if err := s.auditResource(ctx, c, outbox.AuditRead, typ, gl.Letter.ID, ref); err != nil {
		return GPLetter{}, err
	}
	return gl, nil
}

// composeLetter renders the letter from the versions up to the closing one. Versions written before
// socialrx kept version history are missing: when none of the kept ones closed the referral, the current
// one (which did) stands for it.
func composeLetter(versions []outbox.Referral, cur outbox.Referral, dir mapping.Directory, uk *time.Location) (GPLetter, error) {
	plain := make([]mapping.Referral, len(versions))
	for i, v := range versions {
		plain[i] = v.Referral
	}
	closing, ok := letter.Closing(plain)
	switch {
	case ok:
		plain, cur = plain[:closing+1], versions[closing]
	default:
		plain = append(plain, cur.Referral)
	}
	svc, _ := dir.Service(cur.Record.Service.ID)
	l := letter.Compose(plain, svc.Contact, uk)
	pdf, err := letter.Render(l)
	if err != nil {
		return GPLetter{}, err
	}
	return GPLetter{Referral: cur, Letter: l, PDF: pdf}, nil
}
