<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Verify;

use Autoheal\Sdk\Support\Text;

/**
 * Typed, exact reading of a decoded JSON object (\stdClass): a field of the wrong type, a
 * missing one or one this SDK does not know is a Refusal with the given reason. Unknown
 * fields are refused rather than ignored because every signed shape is versioned
 * (`command_format`, `certificate_format`, `bundle_format`): a field this SDK does not know
 * is meaning it cannot honour.
 */
final class Shape
{
    /** @var array<string, mixed> */
    private array $fields;
    private string $reason;
    private string $what;

    /** @param array<string, mixed> $fields */
    private function __construct(array $fields, string $reason, string $what)
    {
        $this->fields = $fields;
        $this->reason = $reason;
        $this->what = $what;
    }

    /** @param mixed $value */
    public static function of($value, string $reason, string $what): self
    {
        if (!$value instanceof \stdClass) {
            throw new Refusal($reason, $what . ' must be a JSON object');
        }
        return new self(get_object_vars($value), $reason, $what);
    }

    /** @param list<string> $allowed */
    public function only(array $allowed): self
    {
        foreach (array_keys($this->fields) as $name) {
            if (!in_array((string) $name, $allowed, true)) {
                throw $this->refuse('has an unknown field `' . Text::clean((string) $name, 64) . '`');
            }
        }
        return $this;
    }

    public function has(string $name): bool
    {
        return array_key_exists($name, $this->fields);
    }

    /** @return mixed */
    public function raw(string $name)
    {
        if (!$this->has($name)) {
            throw $this->refuse('lacks `' . $name . '`');
        }
        return $this->fields[$name];
    }

    public function string(string $name): string
    {
        $value = $this->raw($name);
        if (!is_string($value)) {
            throw $this->refuse('`' . $name . '` must be a string');
        }
        return $value;
    }

    public function nonEmptyString(string $name): string
    {
        $value = $this->string($name);
        if ($value === '') {
            throw $this->refuse('`' . $name . '` must not be empty');
        }
        return $value;
    }

    public function int(string $name): int
    {
        $value = $this->raw($name);
        if (!is_int($value)) {
            throw $this->refuse('`' . $name . '` must be an integer');
        }
        return $value;
    }

    public function bool(string $name): bool
    {
        $value = $this->raw($name);
        if (!is_bool($value)) {
            throw $this->refuse('`' . $name . '` must be a boolean');
        }
        return $value;
    }

    /** @return list<mixed> */
    public function list(string $name): array
    {
        $value = $this->raw($name);
        if (!is_array($value)) {
            throw $this->refuse('`' . $name . '` must be an array');
        }
        return $value;
    }

    public function object(string $name): self
    {
        $value = $this->raw($name);
        if (!$value instanceof \stdClass) {
            throw $this->refuse('`' . $name . '` must be an object');
        }
        return new self(get_object_vars($value), $this->reason, $this->what . '.' . $name);
    }

    /** @return array<string, mixed> the fields as they are (values still decoded JSON) */
    public function fields(): array
    {
        return $this->fields;
    }

    public function refuse(string $problem): Refusal
    {
        return new Refusal($this->reason, $this->what . ' ' . $problem);
    }
}
