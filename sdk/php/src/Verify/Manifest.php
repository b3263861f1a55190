<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Verify;

use Autoheal\Sdk\Operations\OperationKind;
use Autoheal\Sdk\Operations\Syntax;
use Autoheal\Sdk\Support\Json;
use Autoheal\Sdk\Support\JsonException;
use Autoheal\Sdk\Time\Instant;
use Autoheal\Sdk\Time\InvalidTimestamp;

/**
 * A bundle's manifest, parsed only after its signature verified (patches/README.md, "The
 * bundle"). Unknown fields are refused, as the host does.
 */
final class Manifest
{
    private const FIELDS = [
        'name', 'version', 'patch_type', 'description', 'platforms', 'plugin_versions', 'module_sha256',
        'module_size_bytes', 'created_at', 'expires_at', 'abi_version', 'operations', 'limits', 'params_schema',
    ];
    private const PATCH_TYPES = ['database_patch', 'config_update', 'code_patch', 'notify'];
    private const LIMITS = ['fuel', 'max_memory_bytes', 'max_table_elements', 'deadline_ms', 'max_output_bytes'];

    private string $name;
    private string $version;
    private string $moduleSha256;
    private int $moduleSize;
    private Instant $expiresAt;
    /** @var list<string> */
    private array $operations;
    /** @var array<string, mixed> */
    private array $fields;

    private function __construct()
    {
    }

    /** @throws Refusal bundle_invalid */
    public static function parse(string $bytes): self
    {
        try {
            $decoded = Json::decode($bytes);
        } catch (JsonException $e) {
            throw new Refusal(Reason::BUNDLE_INVALID, 'the bundle manifest is not JSON');
        }
        $s = Shape::of($decoded, Reason::BUNDLE_INVALID, 'manifest')->only(self::FIELDS);
        $m = new self();
        $m->name = $s->string('name');
        if (!Syntax::isIdentifier($m->name)) {
            throw $s->refuse('name is not an identifier');
        }
        $m->version = $s->string('version');
        if (!SemVer::isValid($m->version)) {
            throw $s->refuse('version is not a semantic version');
        }
        if (!in_array($s->string('patch_type'), self::PATCH_TYPES, true)) {
            throw $s->refuse('has an unknown patch_type');
        }
        if ($s->has('description')) {
            $s->string('description');
        }
        // Strings, as the host reads them (it does not judge the names; the server only
        // offers a patch to the platforms it names).
        foreach ($s->list('platforms') as $p) {
            if (!is_string($p)) {
                throw $s->refuse('platforms must be strings');
            }
        }
        $s->string('plugin_versions');
        // Compared with the module's hash (a wrong one is bundle_module_mismatch).
        $m->moduleSha256 = $s->string('module_sha256');
        $m->moduleSize = $s->int('module_size_bytes');
        if ($m->moduleSize < 0) {
            throw $s->refuse('module_size_bytes must not be negative');
        }
        try {
            Instant::parse($s->string('created_at'));
            $m->expiresAt = Instant::parse($s->string('expires_at'));
        } catch (InvalidTimestamp $e) {
            throw $s->refuse('created_at and expires_at must be RFC 3339 UTC');
        }
        if ($s->int('abi_version') !== 1) {
            throw $s->refuse('has abi_version ' . $s->int('abi_version') . ', this SDK knows 1');
        }
        $m->operations = self::declaredOperations($s);
        if ($s->has('limits')) {
            $limits = $s->object('limits')->only(self::LIMITS);
            foreach ($limits->fields() as $limit => $value) {
                if ($value !== null && $limits->int((string) $limit) < 0) {
                    throw $limits->refuse($limit . ' must not be negative');
                }
            }
        }
        if ($s->has('params_schema')) {
            self::checkParamsSchema($s->object('params_schema'));
        }
        $m->fields = Json::toArray($s->fields());
        return $m;
    }

    /**
     * At least one kind, each once, never drop_column (only a rollback drops a column).
     *
     * @return list<string>
     */
    private static function declaredOperations(Shape $s): array
    {
        $kinds = $s->list('operations');
        if ($kinds === []) {
            throw $s->refuse('declares no operations');
        }
        foreach ($kinds as $kind) {
            if (!is_string($kind) || !in_array($kind, OperationKind::ALL, true)) {
                throw $s->refuse('declares an unknown operation kind');
            }
            if ($kind === OperationKind::DROP_COLUMN) {
                throw $s->refuse('declares drop_column, which only a rollback may use');
            }
        }
        if (count(array_unique($kinds)) !== count($kinds)) {
            throw $s->refuse('declares an operation kind twice');
        }
        return $kinds;
    }

    private static function checkParamsSchema(Shape $schema): void
    {
        foreach (array_keys($schema->fields()) as $param) {
            $spec = $schema->object((string) $param)->only(['type', 'required', 'format', 'max_length', 'description']);
            if (!in_array($spec->string('type'), ['string', 'integer', 'boolean'], true)) {
                throw $spec->refuse('has an unknown type');
            }
            if ($spec->has('required')) {
                $spec->bool('required');
            }
            if ($spec->has('format') && !in_array($spec->string('format'), ['identifier', 'sql_column_type', 'php_size', 'version'], true)) {
                throw $spec->refuse('has an unknown format');
            }
            if ($spec->has('max_length') && $spec->int('max_length') < 0) {
                throw $spec->refuse('max_length must not be negative');
            }
            if ($spec->has('description')) {
                $spec->string('description');
            }
        }
    }

    public function name(): string
    {
        return $this->name;
    }

    public function version(): string
    {
        return $this->version;
    }

    public function moduleSha256(): string
    {
        return $this->moduleSha256;
    }

    public function moduleSize(): int
    {
        return $this->moduleSize;
    }

    public function expiresAt(): Instant
    {
        return $this->expiresAt;
    }

    /** @return list<string> the operation kinds the patch may emit */
    public function operations(): array
    {
        return $this->operations;
    }

    /** @return array<string, mixed> every field as signed */
    public function toArray(): array
    {
        return $this->fields;
    }
}
