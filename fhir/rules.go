package fhir

// The hand-coded table: what R4 requires but its JSON schema cannot say. The schema lists a required element
// only when it is complex (a primitive may legally be sent as its `_element` twin alone), and it leaves out the
// enum of a few required bindings. socialrx needs the values themselves, so these elements must carry a value.

// extraRequired returns the comma-separated elements with min=1 missing from the schema's `required`, for
// the resources socialrx accepts and the datatypes and backbone elements they use. A "name[x]" entry is a
// required choice (any variant satisfies it).
func extraRequired(typeName string) string {
	switch typeName {
	case "ServiceRequest", "Task":
		return "status,intent"
	case "Bundle":
		return "type"
	case "Bundle_Link":
		return "relation,url"
	case "Bundle_Request":
		return "method,url"
	case "Bundle_Response":
		return "status"
	case "Consent":
		return "status"
	case "Consent_Verification":
		return "verified"
	case "Extension":
		return "url"
	case "Narrative":
		return "status"
	case "Patient_Link":
		return "type"
	case "Annotation":
		return "text"
	case "Signature":
		return "when"
	case "PractitionerRole_NotAvailable", "HealthcareService_NotAvailable":
		return "description"
	case "Task_Input", "Task_Output":
		return "value[x]"
	case "OperationOutcome_Issue":
		return "severity,code"
	case "Parameters_Parameter":
		return "name"
	case "CapabilityStatement":
		return "status,date,kind,fhirVersion,format"
	case "CapabilityStatement_Rest":
		return "mode"
	case "CapabilityStatement_Resource":
		return "type"
	case "CapabilityStatement_Interaction", "CapabilityStatement_Interaction1":
		return "code"
	case "CapabilityStatement_SearchParam":
		return "name,type"
	}
	return ""
}

// Required value sets the schema gives no enum for.
const (
	requestStatus   = "draft,active,on-hold,revoked,completed,entered-in-error,unknown"
	requestIntent   = "proposal,plan,directive,order,original-order,reflex-order,filler-order,instance-order,option"
	requestPriority = "routine,urgent,asap,stat"
	daysOfWeek      = "mon,tue,wed,thu,fri,sat,sun"
)

// extraBinding returns the codes and value-set name of a required binding the schema has no enum for.
func extraBinding(typeName, element string) (codes, valueSet string) {
	switch {
	case typeName == "ServiceRequest" && element == "status":
		return requestStatus, "request-status"
	case typeName == "ServiceRequest" && element == "intent":
		return requestIntent, "request-intent"
	case (typeName == "ServiceRequest" || typeName == "Task") && element == "priority":
		return requestPriority, "request-priority"
	case typeName == "Timing_Repeat" && element == "dayOfWeek",
		typeName == "PractitionerRole_AvailableTime" && element == "daysOfWeek":
		return daysOfWeek, "days-of-week"
	}
	return "", ""
}

// transactionEntryType reports whether a transaction Bundle may carry a resource of this type next to its
// ServiceRequest.
func transactionEntryType(resourceType string) bool {
	switch resourceType {
	case "Patient", "Consent", "Practitioner", "PractitionerRole", "Organization", "HealthcareService":
		return true
	}
	return false
}
