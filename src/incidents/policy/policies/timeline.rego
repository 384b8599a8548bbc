# The platform's access policy: what each subject may do and see.
#
# Input:  {"subject": {"id", "roles": [..], "attributes": [..], "clearance", "groups": [..]}}
# Output: data.incidents.authz.decision, a document with
#   actions       the actions the subject may take
#   visibilities  the event visibilities (im.visibility) the subject may see at all
#   data_classes  the data classes (im.data_class) the subject may read unredacted
#   field_rules   name patterns that classify data fields nobody tagged
#   marker        what a redacted value is replaced by
#
# Replace this directory with IM_POLICY_DIR to change the policy; changes are picked
# up without a restart. Keep the shape of `decision`.
package incidents.authz

import rego.v1

role_actions := {
	"timeline.reader": ["timeline.read", "incident.read"],
	"timeline.writer": ["timeline.append"],
	"timeline.exporter": ["timeline.export", "timeline.verify"],
	"incident.reader": ["timeline.read", "incident.read"],
	"incident.responder": [
		"timeline.read", "timeline.append", "incident.read", "incident.write", "artifact.write",
	],
	"incident.commander": [
		"timeline.read", "timeline.append", "timeline.export", "timeline.verify",
		"incident.read", "incident.write", "incident.close", "artifact.write",
	],
	# Legal holds and data-subject erasure; reads what it holds, exports and verifies.
	"compliance.officer": [
		"retention.legal_hold", "retention.erase",
		"timeline.read", "timeline.export", "timeline.verify", "incident.read",
	],
	"admin": ["identity.admin", "timeline.verify"],
}

# The overview's classification scale, lowest first.
levels := ["public", "internal", "confidential", "restricted", "secret"]

clearance_rank := rank if {
	some rank, level in levels
	level == input.subject.clearance
} else := 0

actions contains action if {
	some role in input.subject.roles
	some action in role_actions[role]
}

visibilities contains "public"

visibilities contains "restricted" if "restricted_access" in input.subject.attributes

visibilities contains "confidential" if "confidential_access" in input.subject.attributes

# A clearance opens every visibility at or below its level.
visibilities contains level if {
	some rank, level in levels
	rank <= clearance_rank
}

class_attributes := {
	"pii": "pii_access",
	"phi": "phi_access",
	"financial": "financial_access",
	"legal_hold": "legal_hold_access",
}

data_classes contains class if {
	some class, attribute in class_attributes
	attribute in input.subject.attributes
}

# Fields classified by name when nobody tagged them. A pattern matches a field name
# lowercased as written (customer_name) or also without '_', '-' and spaces
# (firstName -> firstname), at any depth of data and in custom extensions.
field_rules := [
	{"pattern": "*email*", "class": "pii"},
	{"pattern": "mail", "class": "pii"},
	{"pattern": "*phone*", "class": "pii"},
	{"pattern": "*mobile*", "class": "pii"},
	{"pattern": "*_name", "class": "pii"},
	{"pattern": "firstname", "class": "pii"},
	{"pattern": "lastname", "class": "pii"},
	{"pattern": "fullname", "class": "pii"},
	{"pattern": "surname", "class": "pii"},
	{"pattern": "givenname", "class": "pii"},
	{"pattern": "familyname", "class": "pii"},
	{"pattern": "customername", "class": "pii"},
	{"pattern": "contactname", "class": "pii"},
	{"pattern": "*ssn", "class": "pii"},
	{"pattern": "ssn*", "class": "pii"},
	{"pattern": "dob", "class": "pii"},
	{"pattern": "dateofbirth", "class": "pii"},
	{"pattern": "birthdate", "class": "pii"},
	{"pattern": "*diagnosis*", "class": "phi"},
	{"pattern": "*cardnumber*", "class": "financial"},
	{"pattern": "*iban*", "class": "financial"},
]

marker := "[REDACTED]"

decision := {
	"actions": actions,
	"visibilities": visibilities,
	"data_classes": data_classes,
	"field_rules": field_rules,
	"marker": marker,
}
