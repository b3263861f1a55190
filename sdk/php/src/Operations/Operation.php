<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Operations;

use Autoheal\Sdk\Support\Json;
use Autoheal\Sdk\Support\Text;
use Autoheal\Sdk\Verify\Reason;
use Autoheal\Sdk\Verify\Refusal;
use Autoheal\Sdk\Verify\Shape;

/**
 * One operation of the closed set (patches/README.md). Read in two steps, as the server's
 * reference verifier does: parse() checks the shape (the kind's fields and no others, of
 * their JSON types), validate() the values (identifiers, allowed SQL types, lengths). Both
 * refuse with invalid_operation; OperationValidator decides when each runs.
 */
final class Operation
{
    private const FIELDS = [
        OperationKind::ADD_COLUMN => [['table', 'column', 'column_type'], []],
        OperationKind::DROP_COLUMN => [['table', 'column'], []],
        OperationKind::SET_CONFIG => [['key', 'value'], []],
        OperationKind::UNSET_CONFIG => [['key'], []],
        OperationKind::NOTIFY_MERCHANT => [['template', 'severity', 'message'], ['data']],
    ];

    private string $kind;
    /** @var array<string, mixed> the operation as JSON fields, `op` included */
    private array $fields;

    /** @param array<string, mixed> $fields */
    private function __construct(string $kind, array $fields)
    {
        $this->kind = $kind;
        $this->fields = $fields;
    }

    /**
     * The shape: a known `op`, exactly its fields, strings where strings go, a severity of
     * the three, `data` an object (or null). `value` may be any JSON here.
     *
     * @param mixed $raw decoded JSON (objects as \stdClass)
     * @throws Refusal invalid_operation
     */
    public static function parse($raw, int $index): self
    {
        $shape = Shape::of($raw, Reason::INVALID_OPERATION, 'operation ' . $index);
        $kind = $shape->string('op');
        if (!isset(self::FIELDS[$kind])) {
            throw $shape->refuse('has an unknown op `' . Text::clean($kind, 64) . '`');
        }
        [$required, $optional] = self::FIELDS[$kind];
        $shape->only(array_merge(['op'], $required, $optional));
        foreach ($required as $field) {
            if ($field !== 'value') {
                $shape->string($field);
            } else {
                $shape->raw($field);
            }
        }
        if ($kind === OperationKind::NOTIFY_MERCHANT) {
            if (!in_array($shape->string('severity'), ['info', 'warning', 'critical'], true)) {
                throw $shape->refuse('severity must be info, warning or critical');
            }
            if ($shape->has('data') && $shape->raw('data') !== null) {
                $shape->object('data');
            }
        }
        $fields = Json::toArray($raw);
        if (array_key_exists('data', $fields) && $fields['data'] === null) {
            unset($fields['data']);
        }
        return new self($kind, $fields);
    }

    /**
     * The values, as the host's ops::validate: identifiers, the SQL type allow-list, config
     * keys, a scalar config value of at most 256 characters, a message of 1 to 2000
     * characters, at most 16 data fields of short scalars.
     *
     * @throws Refusal invalid_operation
     */
    public function validate(int $index): void
    {
        $bad = static fn (string $why): Refusal => new Refusal(Reason::INVALID_OPERATION, 'operation ' . $index . ': ' . $why);
        switch ($this->kind) {
            case OperationKind::ADD_COLUMN:
            case OperationKind::DROP_COLUMN:
                foreach (['table', 'column'] as $field) {
                    if (!Syntax::isIdentifier($this->fields[$field])) {
                        throw $bad($field . ' is not an identifier');
                    }
                }
                if ($this->kind === OperationKind::ADD_COLUMN && !Syntax::isSqlColumnType($this->columnType())) {
                    throw $bad('column_type is not an allowed SQL type');
                }
                return;
            case OperationKind::SET_CONFIG:
            case OperationKind::UNSET_CONFIG:
                if (!Syntax::isConfigKey($this->key())) {
                    throw $bad('key is not a config key (lower-case identifiers joined by dots)');
                }
                if ($this->kind === OperationKind::SET_CONFIG && !Syntax::isShortScalar($this->fields['value'])) {
                    throw $bad('value must be a string of at most 256 characters, a number or a boolean');
                }
                return;
            default:
                if (!Syntax::isIdentifier($this->template())) {
                    throw $bad('template is not an identifier');
                }
                $message = $this->message();
                if ($message === '' || !Text::isUtf8($message) || Text::length($message) > Syntax::MAX_MESSAGE) {
                    throw $bad('message must be 1 to 2000 characters');
                }
                $data = $this->data();
                if (count($data) > 16) {
                    throw $bad('data has more than 16 fields');
                }
                foreach ($data as $k => $v) {
                    if (!Syntax::isIdentifier((string) $k) || !($v === null || Syntax::isShortScalar($v))) {
                        throw $bad('data must map identifiers to short scalars');
                    }
                }
        }
    }

    /**
     * From a journal's copy of an operation (checked again: a journal is a file or a table
     * something else could have changed).
     *
     * @param array<string, mixed> $fields
     */
    public static function fromArray(array $fields): self
    {
        $object = (object) $fields;
        if (isset($fields['data']) && is_array($fields['data'])) {
            $object->data = (object) $fields['data'];
        }
        $op = self::parse($object, 0);
        $op->validate(0);
        return $op;
    }

    public function kind(): string
    {
        return $this->kind;
    }

    public function table(): string
    {
        return (string) $this->fields['table'];
    }

    public function column(): string
    {
        return (string) $this->fields['column'];
    }

    public function columnType(): string
    {
        return (string) $this->fields['column_type'];
    }

    public function key(): string
    {
        return (string) $this->fields['key'];
    }

    /** @return string|int|float|bool */
    public function value()
    {
        return $this->fields['value'];
    }

    public function template(): string
    {
        return (string) $this->fields['template'];
    }

    public function severity(): string
    {
        return (string) $this->fields['severity'];
    }

    public function message(): string
    {
        return (string) $this->fields['message'];
    }

    /** @return array<string, scalar|null> */
    public function data(): array
    {
        return is_array($this->fields['data'] ?? null) ? $this->fields['data'] : [];
    }

    /** @return array<string, mixed> */
    public function toArray(): array
    {
        return $this->fields;
    }

    public function describe(): string
    {
        switch ($this->kind) {
            case OperationKind::ADD_COLUMN:
                return 'add_column ' . $this->table() . '.' . $this->column() . ' ' . $this->columnType();
            case OperationKind::DROP_COLUMN:
                return 'drop_column ' . $this->table() . '.' . $this->column();
            case OperationKind::SET_CONFIG:
            case OperationKind::UNSET_CONFIG:
                return $this->kind . ' ' . $this->key();
            default:
                return 'notify_merchant ' . $this->template();
        }
    }
}
