package export

import (
	"encoding/xml"
	"fmt"
	"net/http"
	"time"
)

// s3NS is the XML namespace of S3 responses.
const s3NS = "http://s3.amazonaws.com/doc/2006-03-01/"

// s3Error is an S3 error response: HTTP status, S3 code and message.
type s3Error struct {
	status       int
	code         string
	message      string
	contentRange string // InvalidRange: "bytes */SIZE"
}

func (e *s3Error) Error() string { return fmt.Sprintf("%d %s: %s", e.status, e.code, e.message) }

// S3 error codes the export sends, with their HTTP status.
func errAccessDenied(msg string) *s3Error {
	return &s3Error{status: http.StatusForbidden, code: "AccessDenied", message: msg}
}

func errReadOnly(what string) *s3Error {
	return &s3Error{status: http.StatusForbidden, code: "AccessDenied", message: what + " refused: this Holdfast export is read-only"}
}

func errMethodNotAllowed(method string) *s3Error {
	return &s3Error{status: http.StatusMethodNotAllowed, code: "MethodNotAllowed", message: fmt.Sprintf("the method %s is not allowed against this resource; the export is read-only", method)}
}

func errNotImplemented(what string) *s3Error {
	return &s3Error{status: http.StatusNotImplemented, code: "NotImplemented", message: what + " is not implemented by this read-only export"}
}

func errMalformedAuth(msg string) *s3Error {
	return &s3Error{status: http.StatusBadRequest, code: "AuthorizationHeaderMalformed", message: msg}
}

func errPresignQuery(msg string) *s3Error {
	return &s3Error{status: http.StatusBadRequest, code: "AuthorizationQueryParametersError", message: msg}
}

func errInvalidArgument(msg string) *s3Error {
	return &s3Error{status: http.StatusBadRequest, code: "InvalidArgument", message: msg}
}

func errUnknownKey() *s3Error {
	return &s3Error{status: http.StatusForbidden, code: "InvalidAccessKeyId", message: "the access key ID you provided does not exist in our records"}
}

func errSignatureMismatch() *s3Error {
	return &s3Error{status: http.StatusForbidden, code: "SignatureDoesNotMatch", message: "the request signature we calculated does not match the signature you provided; check your key and signing method"}
}

func errTimeSkewed(req, now time.Time) *s3Error {
	return &s3Error{status: http.StatusForbidden, code: "RequestTimeTooSkewed",
		message: fmt.Sprintf("the difference between the request time (%s) and the server's time (%s) is more than %s", req.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), MaxClockSkew)}
}

func errNoSuchBucket() *s3Error {
	return &s3Error{status: http.StatusNotFound, code: "NoSuchBucket", message: "the specified bucket does not exist"}
}

func errNoSuchKey() *s3Error {
	return &s3Error{status: http.StatusNotFound, code: "NoSuchKey", message: "the specified key does not exist"}
}

func errNoSuchVersion() *s3Error {
	return &s3Error{status: http.StatusNotFound, code: "NoSuchVersion", message: "the export serves unversioned buckets; only versionId=null exists"}
}

func errInvalidRange(size int64) *s3Error {
	return &s3Error{status: http.StatusRequestedRangeNotSatisfiable, code: "InvalidRange", message: fmt.Sprintf("the requested range is not satisfiable for an object of %d bytes", size), contentRange: fmt.Sprintf("bytes */%d", size)}
}

func errPrecondition() *s3Error {
	return &s3Error{status: http.StatusPreconditionFailed, code: "PreconditionFailed", message: "at least one of the preconditions you specified did not hold"}
}

func errInternal() *s3Error {
	return &s3Error{status: http.StatusInternalServerError, code: "InternalError", message: "we encountered an internal error; the export's log says more"}
}

func errPayload(msg string) *s3Error {
	return &s3Error{status: http.StatusBadRequest, code: "InvalidRequest", message: msg}
}

// errorXML is the body of an error response.
type errorXML struct {
	XMLName   xml.Name `xml:"Error"`
	Code      string   `xml:"Code"`
	Message   string   `xml:"Message"`
	Resource  string   `xml:"Resource,omitempty"`
	RequestID string   `xml:"RequestId"`
}

type ownerXML struct {
	ID          string `xml:"ID"`
	DisplayName string `xml:"DisplayName"`
}

// The owner every bucket and object is reported with.
var exportOwner = ownerXML{ID: "holdfast-export", DisplayName: "holdfast-export"}

type bucketXML struct {
	Name         string `xml:"Name"`
	CreationDate string `xml:"CreationDate"`
}

type listBucketsXML struct {
	XMLName xml.Name    `xml:"ListAllMyBucketsResult"`
	NS      string      `xml:"xmlns,attr"`
	Owner   ownerXML    `xml:"Owner"`
	Buckets []bucketXML `xml:"Buckets>Bucket"`
}

type locationXML struct {
	XMLName  xml.Name `xml:"LocationConstraint"`
	NS       string   `xml:"xmlns,attr"`
	Location string   `xml:",chardata"`
}

type versioningXML struct {
	XMLName xml.Name `xml:"VersioningConfiguration"`
	NS      string   `xml:"xmlns,attr"`
}

type contentXML struct {
	Key          string    `xml:"Key"`
	LastModified string    `xml:"LastModified"`
	ETag         string    `xml:"ETag"`
	Size         int64     `xml:"Size"`
	StorageClass string    `xml:"StorageClass"`
	Owner        *ownerXML `xml:"Owner,omitempty"`
}

type prefixXML struct {
	Prefix string `xml:"Prefix"`
}

// listV2XML is a ListObjectsV2 response.
type listV2XML struct {
	XMLName               xml.Name     `xml:"ListBucketResult"`
	NS                    string       `xml:"xmlns,attr"`
	Name                  string       `xml:"Name"`
	Prefix                string       `xml:"Prefix"`
	StartAfter            string       `xml:"StartAfter,omitempty"`
	ContinuationToken     string       `xml:"ContinuationToken,omitempty"`
	NextContinuationToken string       `xml:"NextContinuationToken,omitempty"`
	KeyCount              int          `xml:"KeyCount"`
	MaxKeys               int          `xml:"MaxKeys"`
	Delimiter             string       `xml:"Delimiter,omitempty"`
	EncodingType          string       `xml:"EncodingType,omitempty"`
	IsTruncated           bool         `xml:"IsTruncated"`
	Contents              []contentXML `xml:"Contents"`
	CommonPrefixes        []prefixXML  `xml:"CommonPrefixes"`
}

// listV1XML is a ListObjects (version 1) response.
type listV1XML struct {
	XMLName        xml.Name     `xml:"ListBucketResult"`
	NS             string       `xml:"xmlns,attr"`
	Name           string       `xml:"Name"`
	Prefix         string       `xml:"Prefix"`
	Marker         string       `xml:"Marker"`
	NextMarker     string       `xml:"NextMarker,omitempty"`
	MaxKeys        int          `xml:"MaxKeys"`
	Delimiter      string       `xml:"Delimiter,omitempty"`
	EncodingType   string       `xml:"EncodingType,omitempty"`
	IsTruncated    bool         `xml:"IsTruncated"`
	Contents       []contentXML `xml:"Contents"`
	CommonPrefixes []prefixXML  `xml:"CommonPrefixes"`
}

// s3Time formats a time as S3 listings do.
func s3Time(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }
