<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Verify;

use Autoheal\Sdk\Support\Json;
use Autoheal\Sdk\Support\JsonException;
use Autoheal\Sdk\Support\Text;
use Autoheal\Sdk\Time\Instant;
use Autoheal\Sdk\Time\InvalidTimestamp;

/**
 * The signed payload of a command (check 9), parsed from authentic bytes, exactly its
 * fields (sdk/schemas/signed_command.json). Ids are UUIDs, kept in their lower-case
 * hyphenated form. The operations are kept as carried: check 19 judges them.
 */
final class SignedCommand
{
    public const APPLY_PATCH = 'apply_patch';
    public const ROLLBACK = 'rollback';

    private const FIELDS = [
        'bundle', 'command_format', 'command_type', 'expires_at', 'healing_log_id', 'id', 'install_id',
        'issued_at', 'operations', 'params', 'restore_operations', 'sequence',
    ];

    private string $id;
    private string $installId;
    private int $sequence;
    private string $commandType;
    private string $healingLogId;
    private BundleRef $bundle;
    /** @var array<string, mixed> */
    private array $params;
    /** @var array<string, mixed> `operations` and/or `restore_operations` as carried */
    private array $operationLists;
    private Instant $issuedAt;
    private Instant $expiresAt;

    private function __construct()
    {
    }

    /** @throws Refusal malformed */
    public static function parse(string $payload): self
    {
        try {
            $decoded = Json::decode($payload);
        } catch (JsonException $e) {
            throw new Refusal(Reason::MALFORMED, 'the signed command payload is not JSON');
        }
        $shape = Shape::of($decoded, Reason::MALFORMED, 'signed command')->only(self::FIELDS);
        if ($shape->int('command_format') !== 1) {
            throw $shape->refuse('has command_format ' . $shape->int('command_format') . ', this SDK reads 1');
        }
        $c = new self();
        $c->id = self::uuid($shape, 'id');
        $c->installId = self::uuid($shape, 'install_id');
        $c->sequence = $shape->int('sequence');
        if ($c->sequence < 0) {
            throw $shape->refuse('`sequence` must not be negative');
        }
        $c->commandType = $shape->string('command_type');
        if ($c->commandType !== self::APPLY_PATCH && $c->commandType !== self::ROLLBACK) {
            throw $shape->refuse('has command_type `' . Text::clean($c->commandType, 64) . '`, expected apply_patch or rollback');
        }
        $c->healingLogId = self::uuid($shape, 'healing_log_id');
        // The bundle's fields are only compared (checks 14 and 16): a wrong one is refused there.
        $bundle = $shape->object('bundle')->only(['name', 'sha256', 'version']);
        $c->bundle = new BundleRef($bundle->string('name'), $bundle->string('version'), $bundle->string('sha256'));
        $c->params = Json::toArray($shape->object('params')->fields());
        // The operation lists are judged in check 19, against the bundle.
        $c->operationLists = [];
        foreach (['operations', 'restore_operations'] as $list) {
            if ($shape->has($list)) {
                $c->operationLists[$list] = $shape->raw($list);
            }
        }
        try {
            $c->issuedAt = Instant::parse($shape->string('issued_at'));
            $c->expiresAt = Instant::parse($shape->string('expires_at'));
        } catch (InvalidTimestamp $e) {
            throw $shape->refuse('issued_at and expires_at must be RFC 3339 UTC');
        }
        return $c;
    }

    public function id(): string
    {
        return $this->id;
    }

    public function installId(): string
    {
        return $this->installId;
    }

    public function sequence(): int
    {
        return $this->sequence;
    }

    public function commandType(): string
    {
        return $this->commandType;
    }

    public function isRollback(): bool
    {
        return $this->commandType === self::ROLLBACK;
    }

    public function healingLogId(): string
    {
        return $this->healingLogId;
    }

    public function bundle(): BundleRef
    {
        return $this->bundle;
    }

    /** @return array<string, mixed> */
    public function params(): array
    {
        return $this->params;
    }

    /**
     * The operation lists the payload carries, still unjudged (OperationValidator::check).
     *
     * @return array<string, mixed>
     */
    public function operationLists(): array
    {
        return $this->operationLists;
    }

    private static function uuid(Shape $shape, string $field): string
    {
        $id = Uuid::normalize($shape->string($field));
        if ($id === null) {
            throw $shape->refuse('`' . $field . '` must be a UUID');
        }
        return $id;
    }

    public function issuedAt(): Instant
    {
        return $this->issuedAt;
    }

    public function expiresAt(): Instant
    {
        return $this->expiresAt;
    }
}
