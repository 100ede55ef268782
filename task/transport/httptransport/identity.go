package httptransport

import (
	"crypto/x509"
	"errors"
	"net/http"
	"unicode"
	"unicode/utf8"

	"github.com/taskfleet/taskfleet/task/transport"
)

// Identity authenticates the device behind a request. The Server asks it
// before it reads a request's body; a request it refuses gets 401 and
// changes nothing. Implementations must be safe for concurrent use.
//
// Two implementations come with the package: MTLS (the device's verified
// client certificate names it) and *Enrollment (a per-device key
// obtained once with an enrollment secret).
type Identity interface {
	// Authenticate returns the device r comes from. It must return an
	// error for which errors.Is(err, ErrUnauthenticated) is true when r
	// carries no valid identity (a *AuthError says why).
	Authenticate(r *http.Request) (transport.DeviceID, error)
}

// ErrUnauthenticated matches every *AuthError: a request without a valid
// device identity.
var ErrUnauthenticated = errors.New("httptransport: unauthenticated")

// Reasons of an AuthError, also sent to the device in the 401 answer's
// Taskfleet-Auth-Error header so that its agent can log them.
const (
	ReasonMissing     = "missing_credentials"  // no key or no client certificate
	ReasonUnknown     = "unknown_device"       // no key on record for the device
	ReasonBadKey      = "bad_key"              // the key does not match the device's
	ReasonRevoked     = "revoked"              // the device's key was revoked
	ReasonExpired     = "expired"              // the device's key is older than KeyTTL
	ReasonCertificate = "certificate_unmapped" // the certificate names no device
)

// Reasons of a refused enrollment (POST /v1/enroll), in the answer's
// Taskfleet-Auth-Error header, and of a request the server could not
// handle now.
const (
	ReasonBadSecret   = "bad_secret"       // 401: the enrollment secret is wrong
	ReasonEnrolled    = "already_enrolled" // 409: the device holds a key it used (ErrEnrolled)
	ReasonNotKnown    = "not_known"        // 403: EnrollmentConfig.Known refused the device
	ReasonRateLimited = "rate_limited"     // 429: too many enrollments (Retry-After)
	// ReasonUnavailable: 503, the server cannot check or store the
	// device's key now (its key store failed); retry after Retry-After.
	ReasonUnavailable = "unavailable"
)

// AuthError is a refused identity. It never contains the key or secret
// presented.
type AuthError struct {
	// Device is the device the request claimed to be (possibly empty).
	Device transport.DeviceID
	// Reason is one of the Reason constants.
	Reason string
}

func (e *AuthError) Error() string {
	if e.Device == "" {
		return "httptransport: unauthenticated: " + e.Reason
	}
	return "httptransport: device " + clipID(e.Device) + " unauthenticated: " + e.Reason
}

// Is makes every AuthError match ErrUnauthenticated.
func (e *AuthError) Is(target error) bool { return target == ErrUnauthenticated }

// MaxDeviceIDBytes is the longest device id the package accepts.
const MaxDeviceIDBytes = 256

// validID reports whether id is a device id the package accepts: 1 to
// MaxDeviceIDBytes bytes of UTF-8 without control characters.
func validID(id transport.DeviceID) bool {
	if id == "" || len(id) > MaxDeviceIDBytes || !utf8.ValidString(string(id)) {
		return false
	}
	for _, r := range string(id) {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// clipID keeps a device-chosen id short in errors and logs.
func clipID(id transport.DeviceID) string {
	s := string(id)
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return s
}

// MTLS authenticates devices by their client certificate: the host's
// http.Server verifies it (tls.Config.ClientAuth RequireAndVerifyClientCert
// or VerifyClientCertIfGiven, with the fleet's ClientCAs; see ServerTLS)
// and Device maps the verified leaf certificate to a device id. A request
// without a verified chain is refused.
type MTLS struct {
	// Device returns the device a verified certificate identifies, or an
	// error when it identifies none (for example a revoked serial).
	// Required.
	Device func(cert *x509.Certificate) (transport.DeviceID, error)
}

// Authenticate implements Identity.
func (m MTLS) Authenticate(r *http.Request) (transport.DeviceID, error) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return "", &AuthError{Reason: ReasonMissing}
	}
	if m.Device == nil {
		return "", &AuthError{Reason: ReasonCertificate}
	}
	id, err := m.Device(r.TLS.VerifiedChains[0][0])
	if err != nil || !validID(id) {
		return "", &AuthError{Reason: ReasonCertificate}
	}
	return id, nil
}

// CommonName is an MTLS.Device function: the certificate's subject common
// name is the device id.
func CommonName(cert *x509.Certificate) (transport.DeviceID, error) {
	return transport.DeviceID(cert.Subject.CommonName), nil
}
