package blob

import (
	"encoding/base64"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"strings"
)

// Limits on blocks, as the Blob service sets them.
const (
	// MaxCommittedBlocks is the most blocks a Put Block List may name.
	MaxCommittedBlocks = 50000
	// MaxUncommittedBlocks is the most uncommitted blocks a blob may have at once.
	MaxUncommittedBlocks = 100000
	// MaxBlockIDLength is the longest block id, in bytes before base64 encoding.
	MaxBlockIDLength = 64
	// MaxBlockListBody bounds a Put Block List request body: 50,000 entries of the longest id
	// with their tags fit in well under this.
	MaxBlockListBody = 8 << 20
)

// Where a Put Block List entry looks for its block.
const (
	// FromLatest takes the uncommitted block if there is one, else the committed one.
	FromLatest = "Latest"
	// FromCommitted takes the block from the blob's current committed list.
	FromCommitted = "Committed"
	// FromUncommitted takes the staged, uncommitted block.
	FromUncommitted = "Uncommitted"
)

// BlockRef is one entry of a Put Block List body, in order.
type BlockRef struct {
	// ID is the decoded block id.
	ID []byte
	// From is FromLatest, FromCommitted or FromUncommitted.
	From string
}

// DecodeBlockID decodes a base64 block id and checks its length.
func DecodeBlockID(s string) ([]byte, error) {
	id, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(id) == 0 || len(id) > MaxBlockIDLength {
		return nil, Fail(http.StatusBadRequest, CodeInvalidQueryParameterValue,
			"Value for one of the query parameters specified in the request URI is invalid: the block id must be base64 of 1 to 64 bytes.")
	}
	return id, nil
}

// ParseBlockList reads a Put Block List body,
//
//	<?xml version="1.0" encoding="utf-8"?>
//	<BlockList><Latest>base64-id</Latest><Committed>...</Committed><Uncommitted>...</Uncommitted></BlockList>
//
// keeping the entries in document order across the three kinds. It reads at most
// [MaxBlockListBody] bytes and accepts at most [MaxCommittedBlocks] entries.
func ParseBlockList(r io.Reader) ([]BlockRef, error) {
	invalid := func(format string, args ...any) error {
		return Fail(http.StatusBadRequest, CodeInvalidXMLDocument, "XML specified is not syntactically valid: "+format, args...)
	}
	lr := &io.LimitedReader{R: r, N: MaxBlockListBody + 1}
	dec := xml.NewDecoder(lr)
	dec.Strict = true
	var (
		out   []BlockRef
		depth int
		inTag string
		text  strings.Builder
		seen  bool
	)
	for {
		tok, err := dec.Token()
		if lr.N <= 0 {
			return nil, Fail(http.StatusRequestEntityTooLarge, CodeRequestBodyTooLarge,
				"The request body is too large and exceeds the maximum permissible limit of %d bytes.", MaxBlockListBody)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, invalid("%v", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			switch depth {
			case 1:
				if t.Name.Local != "BlockList" {
					return nil, invalid("the root element is <%s>, not <BlockList>", t.Name.Local)
				}
				seen = true
			case 2:
				switch t.Name.Local {
				case FromLatest, FromCommitted, FromUncommitted:
					inTag = t.Name.Local
					text.Reset()
				default:
					return nil, invalid("unexpected element <%s> in <BlockList>", t.Name.Local)
				}
			default:
				return nil, invalid("unexpected element <%s> inside <%s>", t.Name.Local, inTag)
			}
		case xml.CharData:
			if depth == 2 {
				if text.Len()+len(t) > 2*MaxBlockIDLength {
					return nil, Fail(http.StatusBadRequest, CodeInvalidBlockList, "The specified block list is invalid: a block id is too long.")
				}
				text.Write(t)
			}
		case xml.EndElement:
			if depth == 2 {
				id, err := DecodeBlockID(strings.TrimSpace(text.String()))
				if err != nil {
					return nil, Fail(http.StatusBadRequest, CodeInvalidBlockList, "The specified block list is invalid: entry %d is not a base64 block id of 1 to 64 bytes.", len(out)+1)
				}
				if len(out) == MaxCommittedBlocks {
					return nil, Fail(http.StatusBadRequest, CodeInvalidBlockList,
						"The specified block list is invalid: it names more than %d blocks.", MaxCommittedBlocks)
				}
				out = append(out, BlockRef{ID: id, From: inTag})
			}
			depth--
		}
	}
	if !seen {
		return nil, invalid("there is no <BlockList> element")
	}
	return out, nil
}
