package broker

import (
	"strings"
	"testing"
)

func TestSecretHash(t *testing.T) {
	h, err := HashSecret("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$7$1000$") || strings.Count(h, "$") != 4 {
		t.Fatalf("hash %q is not in the $7$ format", h)
	}
	for _, tt := range []struct {
		hash, secret string
		ok           bool
		bad          bool
	}{
		{h, "s3cret", true, false},
		{h, "s3cret ", false, false},
		{h, "", false, false},
		{"$6$1000$abc$def", "s3cret", false, true},
		{"$7$x$abc$def", "s3cret", false, true},
		{"$7$1000$!!$def", "s3cret", false, true},
		{"plain", "plain", false, true},
	} {
		ok, err := VerifySecret(tt.hash, tt.secret)
		if ok != tt.ok || (err != nil) != tt.bad {
			t.Errorf("VerifySecret(%q, %q) = %v, %v; want %v, error %v", tt.hash, tt.secret, ok, err, tt.ok, tt.bad)
		}
	}
	h2, _ := HashSecret("s3cret")
	if h2 == h {
		t.Error("two hashes of one secret are equal: the salt is not random")
	}
}

// TestSecretHashMatchesMosquitto checks the layout Mosquitto 2 reads:
// iterations in decimal, then salt and hash in padded standard base64.
// That a real Mosquitto accepts these hashes is shown by the broker tests
// against one.
func TestSecretHashMatchesMosquitto(t *testing.T) {
	salt := []byte("0123456789ab")
	h, err := hashWith("citywatch", salt, 101)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := VerifySecret(h, "citywatch"); !ok || err != nil {
		t.Fatalf("round trip of %s: %v %v", h, ok, err)
	}
	if !strings.HasPrefix(h, "$7$101$MDEyMzQ1Njc4OWFi$") {
		t.Errorf("hash %s does not encode iterations and salt as Mosquitto does", h)
	}
}
