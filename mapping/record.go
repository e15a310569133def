package mapping

import (
	"slices"
	"strings"
)

// This file extracts the community record's content. It keeps only what a community service needs to help
// the person: who they are and how to reach them, why they were referred, what they asked for, who referred
// them and their consent. Clinical detail beyond the referral reasons is never copied.

// personOf reads who was referred and how to reach them from a Patient.
func personOf(p rawPatient) Person {
	name := pickName(p.Name)
	out := Person{
		Name:      nameText(name),
		FirstName: firstName(name),
		BirthDate: p.BirthDate,
		Gender:    p.Gender,
		Phone:     pickTelecom("phone", p.Telecom),
		Email:     pickTelecom("email", p.Telecom),
	}
	if a, ok := pickAddress(p.Address); ok {
		out.Postcode = strings.TrimSpace(a.PostalCode)
		if len(a.Line) == 0 && strings.TrimSpace(a.Text) != "" {
			a = rawAddress{Line: []string{a.Text}} // the text already reads as a whole address
		}
		for _, l := range a.Line {
			if l = strings.TrimSpace(l); l != "" {
				out.Address = append(out.Address, l)
			}
		}
		if c := strings.TrimSpace(a.City); c != "" {
			out.Address = append(out.Address, c)
		}
		if pc := strings.TrimSpace(a.PostalCode); pc != "" {
			out.Address = append(out.Address, pc)
		}
	}
	var lang *rawCommunication
	for i := range p.Communication {
		c := &p.Communication[i]
		if c.Preferred != nil && *c.Preferred {
			lang = c
			break
		}
		if lang == nil {
			lang = c
		}
	}
	if lang != nil {
		out.Language = ccText(lang.Language)
	}
	out.InterpreterNeeded = interpreterRequired(p.Extension)
	for _, c := range p.Communication {
		out.InterpreterNeeded = out.InterpreterNeeded || interpreterRequired(c.Extension)
	}
	return out
}

// firstName is a name's first given name, else the first word of its text.
func firstName(n rawHumanName) string {
	for _, g := range n.Given {
		if g = strings.TrimSpace(g); g != "" {
			return g
		}
	}
	if f := strings.Fields(n.Text); len(f) > 0 {
		return f[0]
	}
	return ""
}

// interpreterRequired reads the "interpreter required" flag: the core extension
// http://hl7.org/fhir/StructureDefinition/patient-interpreterRequired on Patient, or an extension (or
// sub-extension, as in the NHS communication extensions) whose url ends in "interpreterRequired".
func interpreterRequired(exts []rawExtension) bool {
	for _, e := range exts {
		if strings.HasSuffix(strings.ToLower(e.URL), "interpreterrequired") && e.ValueBoolean != nil && *e.ValueBoolean {
			return true
		}
		if interpreterRequired(e.Extension) {
			return true
		}
	}
	return false
}

func current(p *rawPeriod) bool { return p == nil || p.End == "" }

// pickName prefers the official name, then the usual one, then any current name that is not old, maiden or
// anonymous.
func pickName(names []rawHumanName) rawHumanName {
	for _, want := range []string{"official", "usual"} {
		for _, n := range names {
			if n.Use == want && current(n.Period) {
				return n
			}
		}
	}
	for _, n := range names {
		switch n.Use {
		case "old", "maiden", "anonymous":
			continue
		}
		if current(n.Period) {
			return n
		}
	}
	return rawHumanName{}
}

// nameText is a name as a person writes it: its text, else given names then family name.
func nameText(n rawHumanName) string {
	if t := strings.TrimSpace(n.Text); t != "" {
		return t
	}
	parts := make([]string, 0, len(n.Given)+1)
	for _, g := range n.Given {
		if g = strings.TrimSpace(g); g != "" {
			parts = append(parts, g)
		}
	}
	if f := strings.TrimSpace(n.Family); f != "" {
		parts = append(parts, f)
	}
	return strings.Join(parts, " ")
}

// titledName is nameText with the prefixes (Dr, Mrs) in front, as a professional is addressed.
func titledName(n rawHumanName) string {
	t := nameText(n)
	if strings.TrimSpace(n.Text) != "" || t == "" {
		return t
	}
	var parts []string
	for _, p := range n.Prefix {
		if p = strings.TrimSpace(p); p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(append(parts, t), " ")
}

// pickTelecom returns the best current contact point of a system: the lowest rank, else the first; the
// lists are tried in order (e.g. the role's, then the practitioner's).
func pickTelecom(system string, lists ...[]rawContactPoint) string {
	for _, cps := range lists {
		best, bestRank := "", 0
		for _, cp := range cps {
			if cp.System != system || strings.TrimSpace(cp.Value) == "" || cp.Use == "old" || !current(cp.Period) {
				continue
			}
			switch {
			case best == "":
				best, bestRank = strings.TrimSpace(cp.Value), cp.Rank
			case cp.Rank > 0 && (bestRank == 0 || cp.Rank < bestRank):
				best, bestRank = strings.TrimSpace(cp.Value), cp.Rank
			}
		}
		if best != "" {
			return best
		}
	}
	return ""
}

// pickAddress prefers a current home address, then any current address that is not only postal.
func pickAddress(as []rawAddress) (rawAddress, bool) {
	for _, a := range as {
		if a.Use == "home" && current(a.Period) {
			return a, true
		}
	}
	for _, a := range as {
		if a.Use != "old" && a.Type != "postal" && current(a.Period) {
			return a, true
		}
	}
	return rawAddress{}, false
}

// referrer reads who made the referral from the requester (and the contained resources it points to), and
// returns the Task.requester reference. A contained requester cannot be referenced from the Task, so the
// Task names the referring organisation by its ODS code instead.
func (c *ctx) referrer(ods string) (Referrer, Reference) {
	out := Referrer{ODSCode: ods}
	if c.sub.ServiceRequest.Requester == nil {
		return out, Reference{}
	}
	req := fromModelRef(c.sub.ServiceRequest.Requester)
	r := c.resolve(req)
	if !r.found {
		if r.typ == "Organization" || (req.Identifier != nil && req.Identifier.System == ODSOrganizationSystem) {
			out.Organisation = strings.TrimSpace(req.Display)
		} else {
			out.Name = strings.TrimSpace(req.Display)
		}
		var task Reference
		if r.kind == refLiteral {
			task.Reference = req.Reference
		}
		task.Type = req.Type
		if r.kind == refLiteral && task.Type == "" {
			task.Type = r.typ
		}
		if req.Identifier != nil && req.Identifier.Value != "" {
			task.Identifier = &Identifier{System: req.Identifier.System, Value: req.Identifier.Value}
			if task.Type == "" && req.Identifier.System == ODSOrganizationSystem {
				task.Type = "Organization"
			}
		}
		task.Display = strings.TrimSpace(req.Display)
		if task.Reference == "" && task.Identifier == nil && task.Display == "" {
			task = Reference{}
		}
		return out, task
	}

	var orgTelecom, practTelecom, roleTelecom []rawContactPoint
	switch r.typ {
	case "Practitioner":
		p := decodeAs[rawPractitioner](r.res)
		out.Name = titledName(pickName(p.Name))
		practTelecom = p.Telecom
	case "PractitionerRole":
		role := decodeAs[rawPractitionerRole](r.res)
		roleTelecom = role.Telecom
		if len(role.Code) > 0 {
			out.Role = ccText(role.Code[0])
		}
		if role.Practitioner != nil {
			out.Name = strings.TrimSpace(role.Practitioner.Display)
			if pr := c.resolve(*role.Practitioner); pr.found && pr.typ == "Practitioner" {
				p := decodeAs[rawPractitioner](pr.res)
				if n := titledName(pickName(p.Name)); n != "" {
					out.Name = n
				}
				practTelecom = p.Telecom
			}
		}
		if role.Organization != nil {
			out.Organisation = strings.TrimSpace(role.Organization.Display)
			if or := c.resolve(*role.Organization); or.found && or.typ == "Organization" {
				o := decodeAs[rawOrganization](or.res)
				if n := strings.TrimSpace(o.Name); n != "" {
					out.Organisation = n
				}
				orgTelecom = o.Telecom
			}
		}
	case "Organization":
		o := decodeAs[rawOrganization](r.res)
		out.Organisation = strings.TrimSpace(o.Name)
		orgTelecom = o.Telecom
	default:
		out.Name = strings.TrimSpace(req.Display)
	}
	if out.Name == "" && r.typ != "Organization" {
		out.Name = strings.TrimSpace(req.Display)
	}
	if out.Organisation == "" && r.typ == "Organization" {
		out.Organisation = strings.TrimSpace(req.Display)
	}
	out.Phone = pickTelecom("phone", roleTelecom, practTelecom, orgTelecom)
	out.Email = pickTelecom("email", roleTelecom, practTelecom, orgTelecom)

	if ods != "" {
		return out, Reference{Type: "Organization", Identifier: &Identifier{System: ODSOrganizationSystem, Value: ods}, Display: out.Organisation}
	}
	switch {
	case out.Name != "":
		return out, Reference{Type: r.typ, Display: out.Name}
	case out.Organisation != "":
		return out, Reference{Type: "Organization", Display: out.Organisation}
	}
	return out, Reference{}
}

// requested is the service asked for: ServiceRequest.code then orderDetail.
func (c *ctx) requested() []Concept {
	sr := &c.sub.ServiceRequest
	var out []Concept
	if sr.Code != nil {
		out = append(out, concepts(fromModelCC(*sr.Code))...)
	}
	for _, d := range sr.OrderDetail {
		cc := fromModelCC(d)
		// Support needs travel as orderDetail codings too; they are the record's support_needs, not a service.
		cc.Coding = slices.DeleteFunc(cc.Coding, func(cd rawCoding) bool { return cd.System == SupportNeedSystem })
		if len(cc.Coding) == 0 && len(fromModelCC(d).Coding) > 0 {
			continue
		}
		out = append(out, concepts(cc)...)
	}
	return out
}

// reasons are why the person was referred: reasonCode texts, then reasonReference displays (or the code of
// the contained Condition/Observation they point to).
func (c *ctx) reasons() []string {
	sr := &c.sub.ServiceRequest
	var out []string
	for _, rc := range sr.ReasonCode {
		if t := ccText(fromModelCC(rc)); t != "" {
			out = append(out, t)
		}
	}
	for i := range sr.ReasonReference {
		ref := fromModelRef(&sr.ReasonReference[i])
		t := strings.TrimSpace(ref.Display)
		if t == "" {
			if r := c.resolve(ref); r.found {
				if code := decodeAs[rawCoded](r.res).Code; code != nil {
					t = ccText(*code)
				}
			}
		}
		if t != "" {
			out = append(out, t)
		}
	}
	return out
}

func (c *ctx) notes() []string {
	var out []string
	for _, n := range c.sub.ServiceRequest.Note {
		if t := strings.TrimSpace(n.Text); t != "" {
			out = append(out, t)
		}
	}
	return out
}
