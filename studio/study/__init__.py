"""Reader studies: design, cases, readers, answers.

Plain functions over a :class:`~studio.study.store.StudyStore`; the admin tab,
tests and scripts call them directly. Every bad request raises
:class:`StudyError` (a ``ValueError``) with a message meant for the user.

What a study holds:

* **cases**: the source images, stored de-identified: the pixels as the
  models see them (windowed to [0, 1], 16-bit PNG for grayscale), no DICOM
  header, under a generated name; plus the upload's SHA-256 for provenance;
* **variants**: per case, the identity ``"original"`` and one image per model,
  all made the same way (read the stored case, run ``models.enhance`` or the
  identity, bring to the case's common display size, write an 8-bit PNG)
  so size or format never tells a reader which variant is which;
* **readers** with an access code each and their own randomized list
  (:func:`plan_assignments`).

Where things are:

* :mod:`.design`: the study design, creating a study, planning and blinding each reader's list;
* :mod:`.cases`: importing source images (de-identified) and rendering the variants readers see;
* :mod:`.manage`: adding readers, closing a study, listing studies and their progress;
* :mod:`.reading`: what a reader does: sign in, get the next item, **save a rating or a choice**;
* :mod:`.auth`: access codes, the admin password, Hugging Face sign-in;
* :mod:`.store`: where studies live (data directory, database, admin password);
* :mod:`.checks`: limits and :class:`StudyError`.

The statistics of a finished study are in :mod:`studio.stats`.
"""

from .cases import folder_files
from .checks import MAX_FILES, MAX_NAME, MAX_READERS, StudyError, whole_number
from .design import (
    CreatedStudy,
    PlannedItem,
    StudyDesign,
    check_design,
    create_study,
    plan_assignments,
    reader_seed,
    default_models,
    ready_models,
)
from .manage import add_hf_readers, add_readers, close_study, list_studies, study_id_of, study_progress

__all__ = [
    "MAX_FILES",
    "MAX_NAME",
    "MAX_READERS",
    "CreatedStudy",
    "PlannedItem",
    "StudyDesign",
    "StudyError",
    "add_hf_readers",
    "add_readers",
    "check_design",
    "close_study",
    "create_study",
    "folder_files",
    "list_studies",
    "plan_assignments",
    "reader_seed",
    "default_models",
    "ready_models",
    "study_id_of",
    "study_progress",
    "whole_number",
]
