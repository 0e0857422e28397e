package config

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Environment variables override the file. Their names come from the
// struct: CITYWATCH_ and the YAML path in upper case with "_" between the
// parts (mqtt.password is CITYWATCH_MQTT_PASSWORD), or the name an `env`
// tag gives (InfluxDB's usual INFLUX_URL…). Lists are comma-separated.
// Lists of sections (webhooks, maintenance windows) are set in the file
// only. So a new setting has its variable without anyone remembering to
// add it.

// EnvVar is one environment variable and the setting it overrides.
type EnvVar struct {
	Name  string // CITYWATCH_MQTT_URL
	Field string // mqtt.url
}

// EnvVars lists every environment variable, in the order of the struct;
// docs/configuration.md shows the same table.
func EnvVars() []EnvVar {
	var out []EnvVar
	walkEnv(reflect.ValueOf(&Config{}).Elem(), nil, func(v EnvVar, _ reflect.Value) { out = append(out, v) })
	return out
}

func applyEnv(c *Config, env func(string) (string, bool)) error {
	var errs []error
	walkEnv(reflect.ValueOf(c).Elem(), nil, func(e EnvVar, field reflect.Value) {
		raw, ok := env(e.Name)
		if !ok {
			return
		}
		if err := setField(field, raw); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q (%s): %w", e.Name, raw, e.Field, err))
		}
	})
	if len(errs) > 0 {
		return fmt.Errorf("config: environment: %w", errors.Join(errs...))
	}
	return nil
}

var durationType = reflect.TypeFor[time.Duration]()

// walkEnv calls fn for every field an environment variable can set.
func walkEnv(v reflect.Value, path []string, fn func(EnvVar, reflect.Value)) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		p := append(path[:len(path):len(path)], name)
		fv := v.Field(i)
		if f.Type.Kind() == reflect.Struct && f.Type != durationType {
			walkEnv(fv, p, fn)
			continue
		}
		if f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() != reflect.String {
			continue // lists of sections: the file only
		}
		env := f.Tag.Get("env")
		if env == "" {
			env = "CITYWATCH_" + strings.ToUpper(strings.Join(p, "_"))
		}
		fn(EnvVar{Name: env, Field: strings.Join(p, ".")}, fv)
	}
}

func setField(f reflect.Value, raw string) error {
	switch {
	case f.Type() == durationType:
		d, err := time.ParseDuration(raw)
		if err != nil {
			return errors.New("want a duration like 30s or 12h")
		}
		f.SetInt(int64(d))
	case f.Kind() == reflect.String:
		f.SetString(raw)
	case f.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return errors.New("want true or false")
		}
		f.SetBool(b)
	case f.CanInt():
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || f.OverflowInt(n) {
			return errors.New("want an integer")
		}
		f.SetInt(n)
	case f.CanUint():
		n, err := strconv.ParseUint(raw, 10, 64)
		if err != nil || f.OverflowUint(n) {
			return errors.New("want a non-negative integer")
		}
		f.SetUint(n)
	case f.Kind() == reflect.Slice:
		var list []string
		for item := range strings.SplitSeq(raw, ",") {
			if item = strings.TrimSpace(item); item != "" {
				list = append(list, item)
			}
		}
		f.Set(reflect.ValueOf(list))
	default:
		return fmt.Errorf("cannot set a %s from the environment", f.Type())
	}
	return nil
}
